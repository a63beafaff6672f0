import ArgumentParser
import Foundation
import GramEngine
import MPI

/// `--eigen`: what the eigen stage computes.
enum EigenMode: String, ExpressibleByArgument, CaseIterable {
    case none, values, vectors, density

    /// The eigendecomposition's output (density computes none: it runs on the tiles).
    var output: EigenOutput {
        switch self {
        case .none, .density: return .none
        case .values: return .values
        case .vectors: return .vectors
        }
    }
}

/// `ntk gram`: compute the kernel, gather it on rank 0, eigendecompose, write files.
struct Gram: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute the empirical NTK Gram matrix of a data set and its eigendecomposition.",
        discussion: """
            Writes into --out: kernel.npy (float64), eigenvalues.npy (ascending), eigenvectors.npy \
            (with --eigen vectors; column j belongs to eigenvalue j), outputs.npy (f(X), shape (N, k)), \
            outputs2.npy (with --data2), spectrum_density.csv and its plot (with --eigen density) and \
            summary.json. Run under mpirun for several ranks.
            """)

    @Option(help: "The data set: a 2-D .npy file (N, d), float64 or float32.")
    var data: String

    @Option(help: "A second data set (M, d) for the cross kernel Θ(X, X2) of shape (N, M); no eigendecomposition then.")
    var data2: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var parameterOptions: ParameterOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(name: .customLong("output-kernel"), help: "For k > 1 outputs: mean (neural-tangents' default), sum (torch.func's tutorial) or full (N, N, k, k).")
    var outputKernel: OutputKernel = .mean

    @Option(help: "empirical (the finite network's NTK), analytic (the infinite-width NTK) or nngp (the infinite-width NNGP kernel).")
    var kernel: KernelKind = .empirical

    @Option(help: "Eigendecomposition: none, values, vectors (values and vectors), or density (the spectral density and diagnostics by stochastic Lanczos quadrature on the distributed kernel, which no rank gathers: spectrum_density.csv and its plot; with --eigen-top K also the top K eigenvalues).")
    var eigen: EigenMode = .values

    @Option(name: .customLong("density-probes"), help: "--eigen density: random probe vectors (the estimates' errors shrink as 1/sqrt(probes)).")
    var densityProbes: Int = SpectralDensityOptions().probes

    @Option(name: .customLong("density-steps"), help: "--eigen density: Lanczos steps per probe (quadrature nodes per probe).")
    var densitySteps: Int = SpectralDensityOptions().steps

    @Option(name: .customLong("eigen-solver"), help: "auto (krylov for --eigen-top K with 10 K ≤ N; else lapack while the kernel fits rank 0's node, beyond it elpa for values and scalapack with vectors), lapack (rank 0, with its node's idle cores), krylov (block Lanczos on the tiles where the ranks computed them; top K only; no rank gathers the kernel), scalapack or elpa (all ranks, block-cyclic; elpa: whole spectrum only).")
    var eigenSolver: EigenSolver = .auto

    @Option(name: .customLong("eigen-top"), help: "Only the K largest eigenpairs.")
    var eigenTop: Int?

    @Option(name: .customLong("kernel-storage"), help: "Where the kernel lives while block Lanczos (--eigen-top K, krylov solver) or --eigen density runs: memory (each rank keeps its tiles), disk (out of core: it stays in kernel.npy and each rank streams its panels from disk for every product, with read-ahead), or auto (disk only when the tiles would not fit rank 0's node).")
    var kernelStorage: KernelStorage = .auto

    @OptionGroup var engineFlags: EngineFlags

    func validate() throws {
        if kernel != .empirical && (parameterOptions.params != nil || engineFlags.method != .structured) {
            throw ValidationError("--kernel \(kernel.rawValue) is the infinite-width limit: it takes no --params or --method")
        }
        try Limits.check(eigenTop, "--eigen-top", 1...Int(Int32.max))
        if eigenTop != nil && eigen == .none { throw ValidationError("--eigen-top needs --eigen values, vectors or density") }
        try Limits.check(densityProbes, "--density-probes", 1...4096)
        try Limits.check(densitySteps, "--density-steps", 1...4096)
        if eigen == .density {
            if eigenSolver != .auto && eigenSolver != .krylov {
                throw ValidationError("--eigen density runs on the distributed kernel (and block Lanczos for --eigen-top): no --eigen-solver \(eigenSolver.rawValue)")
            }
            if outputKernel == .full { throw ValidationError("--eigen density takes the mean or sum kernel, not --output-kernel full") }
        }
        if engineFlags.precision == .f32 && (engineFlags.method != .structured || kernel != .empirical) {
            throw ValidationError("--precision f32 applies to the empirical kernel's structured method only")
        }
        if try parsedSeeds() != nil {
            if parameterOptions.params != nil || parameterOptions.seed != nil { throw ValidationError("--seeds excludes --params and --seed") }
            if kernel != .empirical { throw ValidationError("--seeds averages empirical kernels; --kernel \(kernel.rawValue) needs no draws") }
            if eigen == .density { throw ValidationError("--seeds eigendecomposes the mean kernel with LAPACK on rank 0: no --eigen density") }
            if eigenTop != nil || (eigenSolver != .auto && eigenSolver != .lapack) {
                throw ValidationError("--seeds eigendecomposes the mean kernel with LAPACK on rank 0: no --eigen-top or --eigen-solver \(eigenSolver.rawValue)")
            }
        }
        if data2 != nil && eigen != .values && eigen != .none {
            throw ValidationError("--eigen \(eigen.rawValue) needs a symmetric kernel; drop --data2 or use --eigen none")
        }
    }

    @Option(help: "Comma-separated seeds: the empirical kernel averaged over these parameter draws, in one run (neural-tangents' monte_carlo_kernel_fn); the spread across draws goes to summary.json. Excludes --params and --seed.")
    var seeds: String?

    func parsedSeeds() throws -> [UInt64]? {
        guard let seeds else { return nil }
        return try parseSeedList(seeds, distinct: true)
    }

    func run() throws {
        var options = GramOptions(data: data, model: modelOptions.source, parameters: parameterOptions.source, output: outputOptions.out)
        options.data2 = data2
        options.outputKernel = outputKernel
        options.kernel = kernel
        options.eigenSolver = eigen == .density ? .auto : eigenSolver
        options.eigenTop = eigen == .density ? nil : eigenTop
        options.eigen = data2 == nil ? eigen.output : .none
        if eigen == .density {
            var density = SpectralDensityOptions()
            density.probes = densityProbes
            density.steps = densitySteps
            density.topK = eigenTop
            options.density = density
        }
        options.kernelStorage = kernelStorage
        options.force = outputOptions.force
        options.quiet = outputOptions.quiet
        options.engine = engineFlags.options(progress: outputOptions.progress)
        Interruption.install()
        if let seeds = try parsedSeeds() {
            try runUnderMPI { world in EnsembleJob.run(options, seeds: seeds, world: world) }
            return
        }
        try runUnderMPI { world in GramJob.run(options, world: world) }
    }
}
