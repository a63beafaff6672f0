import ArgumentParser
import Foundation
import GramEngine
import MPI

/// `ntk converge`: the empirical NTK against the infinite-width NTK over widths.
struct Converge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure how the empirical NTK approaches the infinite-width NTK as the network widens.",
        discussion: """
            For each width (given to every hidden dense layer) and seed, computes the empirical NTK and its \
            relative Frobenius distance to the analytic NTK, fits the log-log slope (theory: about -1/2), \
            and writes converge.csv, converge.json and converge.svg (with converge.png where librsvg is installed) into --out.
            """)

    @Option(help: "The data set: a 2-D .npy file (N, d).")
    var data: String

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(help: "Comma-separated hidden widths, e.g. 64,128,256,512,1024.")
    var widths: String = "64,128,256,512,1024"

    @Option(help: "Comma-separated seeds per width.")
    var seeds: String = "0,1,2"

    @OptionGroup var engineFlags: EngineFlags


    func parsedWidths() throws -> [Int] {
        let values = widths.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ (1...Limits.maximumWidth).contains($0 ?? 0) }) else {
            throw ValidationError("--widths must be a comma-separated list of integers between 1 and \(Limits.maximumWidth), got '\(widths)'")
        }
        return values.map { $0! }
    }

    func parsedSeeds() throws -> [UInt64] {
        try parseSeedList(seeds, distinct: false)
    }

    func validate() throws {
        _ = try parsedWidths()
        _ = try parsedSeeds()
    }

    func run() throws {
        var options = ConvergeOptions(data: data, model: modelOptions.source, widths: try parsedWidths(), seeds: try parsedSeeds(), output: outputOptions.out)
        options.force = outputOptions.force
        options.quiet = outputOptions.quiet
        options.engine = engineFlags.options(progress: outputOptions.progress)
        Interruption.install()
        try runUnderMPI { world in ConvergeJob.run(options, world: world) }
    }
}
