import ArgumentParser
import Foundation
import GramEngine
import Network
import NumPyIO

/// `ntk init`: draw parameters and write them as .npz, for Python users to load.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a network's parameters with a seed and write them as .npz (W0, b0, W1, …).",
        discussion: "The arrays are the raw trainable arrays of the parameterization, exactly what `ntk gram --seed S` uses.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The seed.")
    var seed: UInt64 = 0

    @Option(name: .customLong("input-width"), help: "The input width d. Excludes --data.")
    var inputWidth: Int?

    @Option(help: "Take the input width d from this data set (.npy, (N, d)).")
    var data: String?

    @Option(help: "The .npz file to write.")
    var out: String

    @Flag(help: "Replace an existing --out file.")
    var force = false

    func validate() throws {
        if (inputWidth == nil) == (data == nil) { throw ValidationError("give exactly one of --input-width and --data") }
        try Limits.check(inputWidth, "--input-width", 1...Limits.maximumWidth)
    }

    func run() throws {
        do {
            let shape = try inputWidth.map { [$0] } ?? Inputs.sampleShape(Inputs.dataHeader(data!, role: "--data"))
            let spec: ModelSpec
            switch modelOptions.source {
            case .file(let path): spec = try Inputs.model(path)
            case .spec(let s): spec = s
            }
            do { try spec.validate(inputShape: shape) } catch {
                let data = shape.count == 1 ? "d = \(shape[0])" : "samples of shape \(Inputs.format(shape))"
                throw NTKError(.dataError, "the model does not fit \(data): \(error.message)")
            }
            // Size the network before drawing it.
            try InputPlan(n: 0, m: nil, inputShape: shape, spec: spec, finite: true, parameterFileBytes: 0)
                .check(available: MemoryPlan.availableBytes())
            let network = Network.initialized(spec: spec, inputShape: shape, seed: seed)
            let arrays = network.namedArrays.map { (name: $0.name, array: NPYArray(shape: $0.shape, doubles: $0.values)) }
            let bytes: Data
            do { bytes = try NPZFormat.encode(arrays) } catch { throw NTKError(.software, "cannot encode the parameters: \(error)") }
            try OutputDirectory.writeFile(out, bytes, force: force)
            print("ntk init: wrote \(arrays.map(\.name).joined(separator: ", ")) (P = \(network.parameterCount)) to \(out)")
        } catch let error as NTKError {
            Report.error(error.message)
            throw ExitCode(error.status.rawValue)
        }
    }
}
