import ArgumentParser
import Sidecar

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print the version and the libevent / libyaml versions linked."
    )

    func run() throws {
        print(
            "switchyard \(SwitchyardVersion.current) (libevent \(SwitchyardVersion.libevent), libyaml \(SwitchyardVersion.libyaml))"
        )
    }
}
