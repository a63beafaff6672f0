import ArgumentParser
import Foundation
import GramEngine
import LearningDynamics
import MPI

/// `ntk predict`: how the network will learn, from its kernel.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict training dynamics and test predictions of the linearized network (or the infinite-width limit).",
        discussion: """
            Computes Θ(X, X), Θ(X*, X) and f₀ with the distributed engine, eigendecomposes Θ(X, X) = V diag(λ) Vᵀ \
            on rank 0 (--solver eigen; with --solver cg no rank gathers the kernels: conjugate gradients at t = inf, \
            Lanczos approximations at finite times, summary.json 'cg' records the solve) and predicts, with c = N·k, e_i(t) = exp(−η λ_i t / c) (or (1 − η λ_i / c)^s after s steps): \
            f_t(X) = Y + V diag(e(t)) Vᵀ (f₀(X) − Y) and f_t(X*) = f₀(X*) + Θ(X*, X) V diag((1 − e_i)/λ_i) Vᵀ (Y − f₀(X)). At t = inf: \
            f(X*) = f₀(X*) + Θ(X*, X) Θ⁻¹ (Y − f₀(X)), which is plain kernel regression Θ(X*, X) Θ⁻¹ Y only with \
            f₀ = 0 (--f0-zero, or an infinite-width kernel). \
            Writes, for each gradient-flow time and each step count (times first, in the order given): \
            train_predictions.npy (T, N, k), test_predictions.npy (T, M, k), metrics.json (loss, MSE, accuracy \
            for integer labels), summary.json (spectral diagnostics, largest stable learning rate, time \
            constants), report.txt, spectrum.svg and label_power.svg (the training targets' power in the \
            top eigenmodes), each plot also as PNG where librsvg is installed; with --kernel nngp also train_variance.npy (T, N) and test_variance.npy (T, M); \
            with --keep-kernels train_kernel.npy, test_kernel.npy and eigenvalues.npy. Conventions as neural-tangents' \
            predict.gradient_descent_mse: loss (1/(2c))‖f − Y‖² with c = N·k; times in its units (the flow \
            runs for η·t). Integer targets are class labels: one-hot over the model's k outputs.
            """)

    @Option(help: "Training inputs X (N, d), .npy.")
    var train: String

    @Option(help: "Training targets: floats (N,) or (N, k), or integer class labels (N,).")
    var targets: String

    @Option(help: "Test inputs X* (M, d), .npy.")
    var test: String?

    @Option(name: .customLong("test-targets"), help: "Test targets (as --targets), for test MSE and accuracy.")
    var testTargets: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var parameterOptions: ParameterOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(help: "empirical (the linearized finite network at its parameters), analytic (the infinite-width NTK; f₀ = 0, the ensemble mean) or nngp (the infinite-width NNGP: the Gaussian-process posterior at t = inf, mean and variance; neural-tangents' gradient_descent_mse_ensemble with get='nngp').")
    var kernel: KernelKind = .empirical

    @Flag(name: .customLong("f0-zero"), help: "Start from f₀ = 0 instead of the network's outputs: t = inf is then plain kernel regression Θ(X*, X) Θ⁻¹ Y with the empirical NTK.")
    var f0Zero = false

    @Flag(name: .customLong("keep-kernels"), help: "Also write the kernels computed (train_kernel.npy (N, N), test_kernel.npy (M, N)) and the train kernel's eigenvalues (eigenvalues.npy, ascending).")
    var keepKernels = false

    @Option(name: .customLong("learning-rate"), help: "The learning rate η (needed for finite --times and for --steps; t = inf does not depend on it).")
    var learningRate: Double?

    @Option(help: "Comma-separated gradient-flow times; 'inf' is kernel regression (default: inf).")
    var times: String?

    @Option(help: "Comma-separated numbers of discrete gradient-descent steps.")
    var steps: String?

    @Option(name: .customLong("diag-reg"), help: "Diagonal regularizer r: adds r·trace(Θ)/N to the diagonal (neural-tangents' diag_reg).")
    var diagReg: Double?

    @Flag(name: .customLong("diag-reg-absolute"), help: "Add r itself to the diagonal (diag_reg_absolute_scale).")
    var diagRegAbsolute = false

    @Option(help: "How the dynamics are solved: eigen (Θ gathered on rank 0 and eigendecomposed: every time, the spectral diagnostics), cg (on the distributed kernels, which no rank gathers: t = inf by preconditioned conjugate gradients, finite --times and --steps by Lanczos approximations of the dynamics with the top eigenpairs exact; no spectral diagnostics), or auto (cg when the empirical or analytic kernel is asked and the eigen path does not fit rank 0's node; else eigen).")
    var solver: PredictSolver = .auto

    @Option(name: .customLong("cg-tolerance"), help: "--solver cg: the relative residual ‖Y − f₀ − (Θ + δI)α‖/‖Y − f₀‖ to reach for every output (t = inf), or the estimated relative error of the Krylov approximations (finite times; metrics.json also gives proven bounds).")
    var cgTolerance: Double = 1e-10

    @Option(name: .customLong("cg-max-iterations"), help: "--solver cg: the most CG or Lanczos steps before giving up (status 65).")
    var cgMaxIterations: Int = 5000

    @Option(name: .customLong("cg-preconditioner-rank"), help: "--solver cg: the top eigenpairs (block Lanczos) of the spectral preconditioner; 0 for none (at most N/10 are used).")
    var cgPreconditionerRank: Int = 32

    @Option(name: .customLong("kernel-storage"), help: "--solver cg: where the kernels live while they are solved with: memory (each rank keeps its tiles), disk (out of core: each kernel is written to train_kernel.npy / test_kernel.npy as it is computed and every product streams each rank's panels back from disk; with --keep-kernels the files are kept), or auto (disk only when the tiles would not fit rank 0's node). disk with --solver auto means cg.")
    var kernelStorage: KernelStorage = .auto

    @OptionGroup var engineFlags: EngineFlags


    func parsedTimes() throws -> [Double] {
        guard let times else { return steps == nil ? [.infinity] : [] }
        return try times.split(separator: ",").map { raw in
            let text = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if text == "inf" || text == "infinity" { return .infinity }
            guard let t = Double(text), t.isFinite, t >= 0 else { throw ValidationError("--times must list non-negative numbers or 'inf', got '\(raw)'") }
            return t
        }
    }

    func parsedSteps() throws -> [Int] {
        guard let steps else { return [] }
        return try steps.split(separator: ",").map { raw in
            guard let s = Int(raw.trimmingCharacters(in: .whitespaces)), s >= 0 else { throw ValidationError("--steps must list non-negative integers, got '\(raw)'") }
            return s
        }
    }

    func validate() throws {
        _ = try parsedTimes()
        _ = try parsedSteps()
        let times = try parsedTimes(), steps = try parsedSteps()
        if let learningRate {
            if !(learningRate.isFinite && learningRate > 0) { throw ValidationError("--learning-rate must be a positive number") }
        } else if !steps.isEmpty || times.contains(where: { $0.isFinite }) {
            throw ValidationError("--learning-rate is needed for finite --times and for --steps (only t = inf does without it)")
        }
        if let diagReg, !(diagReg.isFinite && diagReg >= 0) { throw ValidationError("--diag-reg must be a non-negative number") }
        if diagRegAbsolute && diagReg == nil { throw ValidationError("--diag-reg-absolute needs --diag-reg") }
        if testTargets != nil && test == nil { throw ValidationError("--test-targets needs --test") }
        if kernel != .empirical && parameterOptions.params != nil { throw ValidationError("--kernel \(kernel.rawValue) takes no --params") }
        if !(cgTolerance.isFinite && cgTolerance > 0 && cgTolerance < 1) { throw ValidationError("--cg-tolerance must be in (0, 1)") }
        try Limits.check(cgMaxIterations, "--cg-max-iterations", 1...10_000_000)
        try Limits.check(cgPreconditionerRank, "--cg-preconditioner-rank", 0...4096)
        if solver == .cg {
            if kernel == .nngp { throw ValidationError("--solver cg gives the mean only; --kernel nngp (mean and variance) needs --solver eigen") }
            if keepKernels && kernelStorage != .disk {
                throw ValidationError("--keep-kernels needs --solver eigen, or --solver cg with --kernel-storage disk (CG never gathers the kernels; out of core they are files)")
            }
        }
        if kernelStorage != .auto && solver == .eigen {
            throw ValidationError("--kernel-storage \(kernelStorage.rawValue) applies to --solver cg (the eigen path gathers the kernels on rank 0)")
        }
    }

    func run() throws {
        var options = PredictOptions(train: train, targets: targets, model: modelOptions.source, parameters: parameterOptions.source, output: outputOptions.out)
        options.test = test
        options.testTargets = testTargets
        options.kernel = kernel
        options.zeroInitialOutputs = f0Zero
        options.keepKernels = keepKernels
        options.learningRate = learningRate ?? 1
        options.times = try parsedTimes()
        options.steps = try parsedSteps()
        if let diagReg { options.regularizer = diagRegAbsolute ? .absolute(diagReg) : .relative(diagReg) }
        options.force = outputOptions.force
        options.quiet = outputOptions.quiet
        options.engine = engineFlags.options(progress: outputOptions.progress)
        options.solver = solver
        options.cgTolerance = cgTolerance
        options.cgMaxIterations = cgMaxIterations
        options.preconditionerRank = cgPreconditionerRank
        options.kernelStorage = kernelStorage
        Interruption.install()
        try runUnderMPI { world in PredictJob.run(options, world: world) }
    }
}
