import ArgumentParser
import Sidecar

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print the version and the libevent / libyaml versions linked."
    )

    /// What both `switchyard version` and `switchyard --version` print.
    static var text: String {
        "switchyard \(SwitchyardVersion.current) (libevent \(SwitchyardVersion.libevent), libyaml \(SwitchyardVersion.libyaml))"
    }

    func run() throws {
        print(Self.text)
    }
}
