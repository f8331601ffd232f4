import ArgumentParser
import Foundation
import Policy

/// `switchyard schema routes|policy` prints the JSON Schema editors validate config files
/// with; `--markdown` prints the configuration reference. Both come from the key catalogue the
/// loader checks with (Sources/Policy/Catalogue.swift), so they describe this binary's loader.
struct Schema: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the JSON Schema of route or policy files, or the configuration reference.",
        discussion: """
            The schemas are JSON Schema draft-07, which the YAML language server (VS Code's YAML \
            extension and others) uses to check and complete files as you type; the repository \
            publishes them in schema/. Point a file at one with a first line such as
            # yaml-language-server: $schema=../schema/routes.schema.json
            """
    )

    @Argument(help: ArgumentHelp("Which files: routes or policy.", valueName: "KIND"))
    var kind: ConfigFileKind?

    @Flag(help: "Print the configuration reference (docs/configuration.md) instead, as Markdown.")
    var markdown = false

    func validate() throws {
        if markdown, kind != nil { throw ValidationError("give a KIND or --markdown, not both") }
        if !markdown, kind == nil { throw ValidationError("name the files: routes or policy (or give --markdown)") }
    }

    func run() throws {
        let text = kind.map(ConfigCatalogue.schemaText) ?? ConfigCatalogue.referenceMarkdown()
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

extension ConfigFileKind: ExpressibleByArgument {}
