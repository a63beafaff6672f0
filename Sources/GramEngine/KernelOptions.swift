import DistributedEigen
/// Which kernel a job computes.
public enum KernelKind: String, Sendable, CaseIterable {
    /// The empirical NTK of the finite network at its parameters.
    case empirical
    /// The infinite-width NTK (neural-tangents' kernel_fn(..., 'ntk')).
    case analytic
    /// The infinite-width NNGP (Gaussian-process) kernel (kernel_fn(..., 'nngp')).
    case nngp
}

/// How the k outputs of a network enter the kernel.
public enum OutputKernel: String, Sendable, CaseIterable {
    /// (1/k) Σ_c ⟨∇f_c(x), ∇f_c(x')⟩: neural-tangents' default (trace_axes=(-1,)).
    case mean
    /// Σ_c ⟨∇f_c(x), ∇f_c(x')⟩, as torch.func's tutorial computes it.
    case sum
    /// ⟨∇f_a(x_i), ∇f_b(x_j)⟩ for all output pairs: shape (N, N, k, k).
    case full
}

/// How per-sample gradients enter tile inner products.
public enum GradientMethod: String, Sendable, CaseIterable {
    /// Per dense layer, Σ_l (s_l² Z_I Z_Jᵀ + t_l²) ⊙ (D_I D_Jᵀ): never forms a gradient vector.
    case structured
    /// Full per-sample gradient vectors of length P, tile = G_I G_Jᵀ: the general path
    /// and the cross-check.
    case explicit
}

/// What the eigendecomposition writes.
public enum EigenOutput: String, Sendable, CaseIterable {
    case none
    case values
    case vectors
}

/// Where the eigendecomposition runs.
public enum EigenSolver: String, Sendable, CaseIterable {
    /// `krylov` for the top K when 10 K ≤ the order, otherwise `lapack` (the default).
    case auto
    /// Block Lanczos on the tiles where the ranks computed them (top K only): no rank
    /// gathers the kernel; each step multiplies every rank's tiles by a block of vectors
    /// and sums the products with one reduction.
    case krylov
    /// LAPACK dsyevd on rank 0, with the node's idle cores (rank 0 holds the kernel).
    case lapack
    /// ScaLAPACK on a 2-D block-cyclic distribution over all ranks (no rank holds N x N):
    /// pdsyevd for all pairs, pdsyevr for values only or the top K.
    case scalapack
    /// ELPA on the same block-cyclic distribution (no rank holds N x N): all values, or
    /// all pairs; its two-stage solver for values, one-stage with vectors.
    case elpa

    /// The solvers that redistribute the kernel block-cyclically over all ranks.
    public var isBlockCyclic: Bool { self == .scalapack || self == .elpa }
}

/// The arithmetic of the tile products.
public enum Precision: String, Sendable, CaseIterable {
    /// float64 throughout (the default; agrees with neural-tangents to 1e-10).
    case f64
    /// Per-sample factors rounded to float32 and multiplied in float32 within k-chunks of
    /// 256, chunks, layers and the Hadamard combination summed in float64. Twice the SIMD
    /// width; relative error about 1e-6 (measured, see the tests).
    case f32
}

extension EigenSolver {
    /// The solver `auto` stands for, for the top `top` eigenpairs (nil: all) of a matrix
    /// of this order.
    ///
    /// `auto` picks `krylov` for the top K with 10 K ≤ N; otherwise `lapack`, which
    /// `GramJob` replaces by `automaticFullSpectrum`'s distributed choice when LAPACK does
    /// not fit rank 0's node.
    public func resolved(order: Int, top: Int?) -> EigenSolver {
        guard self == .auto else { return self }
        if let top, 10 * top <= order { return .krylov }
        return .lapack
    }

    /// `auto`'s choice for the whole spectrum of a symmetric kernel: LAPACK on rank 0 while
    /// it fits there (its memory plan on rank 0's node within `available`, and the order
    /// within LAPACK's 32-bit limits); otherwise, with 2 or more ranks, the fastest
    /// distributed solver measured (docs/cluster.md, "Eigensolvers"): ELPA's two-stage
    /// solver for values, ScaLAPACK's pdsyevd with vectors; for the `top` K (auto gives
    /// them to LAPACK when 10 K > N) ScaLAPACK's pdsyevr, since ELPA computes the whole
    /// spectrum only. One rank keeps LAPACK, and the memory plan then says what does not fit.
    public static func automaticFullSpectrum(order: Int, vectors: Bool, top: Int? = nil, ranks: Int, lapackNodeBytes: Int,
                                             available: Int?) -> EigenSolver {
        let limit = vectors ? lapackVectorsLimit : lapackValuesLimit
        let fits = order <= limit && (available.map { lapackNodeBytes <= $0 } ?? true)
        if fits || ranks < 2 { return .lapack }
        return vectors || top != nil ? .scalapack : .elpa
    }

    /// LAPACK's 32-bit integers: the matrix index n² must fit (values), and with vectors
    /// dsyevd's workspace 1 + 6n + 2n².
    public static let lapackValuesLimit = 46_340
    public static let lapackVectorsLimit = 32_766

    /// ELPA's stage for each mode, from the measurements in docs/cluster.md
    /// ("Eigensolvers"): two-stage for values, one-stage with vectors.
    public static func elpaLibrary(vectors: Bool) -> DistributedLibrary {
        .elpa(stage: vectors ? 1 : 2)
    }
}

/// Where a distributed solver's kernel lives (`--kernel-storage`).
public enum KernelStorage: String, Sendable, CaseIterable {
    /// Memory when the memory plan fits rank 0's node, else disk.
    case auto
    /// Each rank keeps the tiles it computed.
    case memory
    /// Out of core: the kernel stays in its .npy file and each rank streams its panels
    /// for every product (`KernelFileOperator`).
    case disk
}
