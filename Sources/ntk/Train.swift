import ArgumentParser
import Foundation
import GramEngine
import MPI

/// `ntk train`: the real network trained by gradient descent, against its NTK prediction.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the finite network by full-batch gradient descent and compare it with the NTK's prediction.",
        discussion: """
            Same loss, learning rate, parameterization and parameters as ntk predict (loss (1/(2c))‖f − Y‖², c = N·k). \
            Records the real outputs and the linearized (NTK) prediction at each --steps count, their distance \
            ‖f_t − f_t^lin‖_F / ‖Y − f_0‖_F, and how far the empirical NTK moved, ‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F. Over \
            widths this shows where the lazy (linear) regime holds. Writes train_outputs.npy, \
            ntk_train_predictions.npy, test_outputs.npy, ntk_test_predictions.npy (T, ·, k), trained_params.npz and \
            training.json. The training state (step, parameters, outputs recorded so far) is saved to \
            DIR/checkpoint/training every 60 s and when a stop request (SIGUSR1, SIGTERM, SIGINT) ends the run with \
            status 75; --resume continues from it (at the same rank count, bitwise the uninterrupted result).
            """)

    @Option(help: "Training inputs X (N, d), .npy.")
    var train: String

    @Option(help: "Training targets: floats (N,) or (N, k), or integer class labels (N,).")
    var targets: String

    @Option(help: "Test inputs X* (M, d), .npy.")
    var test: String?

    @Option(name: .customLong("test-targets"), help: "Test targets (as --targets), for test MSE.")
    var testTargets: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var parameterOptions: ParameterOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(name: .customLong("learning-rate"), help: "The learning rate η.")
    var learningRate: Double

    @Option(help: "Comma-separated step counts to record (training runs to the largest; default 0,10,100,1000).")
    var steps: String = "0,10,100,1000"

    @OptionGroup var engineFlags: EngineFlags


    func parsedSteps() throws -> [Int] {
        let values = steps.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? -1) >= 0 }) else {
            throw ValidationError("--steps must list non-negative integers, got '\(steps)'")
        }
        return values.map { $0! }
    }

    func validate() throws {
        _ = try parsedSteps()
        if !(learningRate.isFinite && learningRate > 0) { throw ValidationError("--learning-rate must be a positive number") }
        if testTargets != nil && test == nil { throw ValidationError("--test-targets needs --test") }
    }

    func run() throws {
        var options = TrainOptions(train: train, targets: targets, model: modelOptions.source, parameters: parameterOptions.source, output: outputOptions.out)
        options.test = test
        options.testTargets = testTargets
        options.learningRate = learningRate
        options.steps = try parsedSteps()
        options.force = outputOptions.force
        options.quiet = outputOptions.quiet
        options.engine = engineFlags.options(progress: outputOptions.progress)
        Interruption.install()
        try runUnderMPI { world in TrainJob.run(options, world: world) }
    }
}
