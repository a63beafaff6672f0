import CCPU
import CLAPACK

/// Facts about, and settings of, the BLAS library in use (OpenBLAS).
public enum BLASLibrary {
    /// The name of the compute kernel OpenBLAS chose for this CPU (e.g. "SkylakeX",
    /// "Haswell", or the slow generic "Prescott").
    public static var coreName: String {
        guard let name = ntk_openblas_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// True when OpenBLAS runs a generic fallback kernel (several times slower than the
    /// CPU allows; set OPENBLAS_CORETYPE to the CPU's family to fix it).
    public static var isGenericFallback: Bool {
        let name = coreName.lowercased()
        return name == "prescott" || name == "core2" || name == "generic" || name == "unknown"
    }

    /// A faster OpenBLAS kernel this CPU runs when the one in use is an AVX2 kernel on a
    /// CPU with AVX-512 (e.g. OPENBLAS_CORETYPE=Haswell left set from another machine):
    /// dgemm and the eigensolvers run about 1.6× faster with it. Nil otherwise.
    public static var fasterCore: String? {
        let avx2Kernels = ["haswell", "zen", "sandybridge"]
        guard avx2Kernels.contains(coreName.lowercased()), ntk_cpu_has_avx512() != 0 else { return nil }
        return "SkylakeX"
    }

    /// The kernel to ask OpenBLAS for, when it chose a slower one than the CPU runs and
    /// nobody chose one (`OPENBLAS_CORETYPE` unset): SkylakeX on a CPU with AVX-512 (when
    /// OpenBLAS fell back to its generic kernel or took an AVX2 one, as Debian's 0.3.21
    /// does on some virtualized Xeons), Haswell on an AVX2 CPU left with the generic
    /// kernel. OpenBLAS reads the variable when it loads, so the process must start again
    /// with it set (see `ntk`'s entry point). Nil when the kernel in use is right.
    public static func preferredCore(environment: [String: String]) -> String? {
        if environment["OPENBLAS_CORETYPE"] != nil { return nil }
        if ntk_cpu_has_avx512() != 0 && (isGenericFallback || fasterCore != nil) { return "SkylakeX" }
        if ntk_cpu_has_avx2_fma() != 0 && isGenericFallback { return "Haswell" }
        return nil
    }

    /// The environment variable that marks a process restarted by `ntk` with the kernel
    /// it chose (and keeps it from restarting twice).
    public static let chosenMarker = "NTK_BLAS_CORE_CHOSEN"

    /// Who chose the kernel in use: "ntk" (restarted with the kernel it chose), "environment"
    /// (`OPENBLAS_CORETYPE` set by the user or the site) or "openblas" (its own detection).
    public static func coreChoice(environment: [String: String]) -> String {
        if environment[chosenMarker] != nil && environment["OPENBLAS_CORETYPE"] == environment[chosenMarker] { return "ntk" }
        return environment["OPENBLAS_CORETYPE"] != nil ? "environment" : "openblas"
    }

    /// The number of threads BLAS calls may use.
    public static var threadCount: Int {
        get { Int(ntk_openblas_get_num_threads()) }
    }

    /// Sets the number of threads BLAS calls may use (one per MPI rank is the default
    /// policy of the engine).
    public static func setThreadCount(_ count: Int) {
        ntk_openblas_set_num_threads(Int32(max(1, count)))
    }
}

/// Row-major dense matrix products through BLAS.
public enum GEMM {
    /// C (m x n) = alpha * A (m x k) * B (n x k)^T + beta * C; row-major with leading
    /// dimensions lda, ldb, ldc.
    public static func multiplyTransposed(m: Int, n: Int, k: Int, alpha: Double = 1,
                                          a: UnsafePointer<Double>, lda: Int,
                                          b: UnsafePointer<Double>, ldb: Int,
                                          beta: Double = 0,
                                          c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        ntk_dgemm_nt(Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C (m x n) = alpha * A (k x m)ᵀ * B (k x n) + beta * C; row-major.
    public static func multiplyTransposedA(m: Int, n: Int, k: Int, alpha: Double = 1,
                                           a: UnsafePointer<Double>, lda: Int,
                                           b: UnsafePointer<Double>, ldb: Int,
                                           beta: Double = 0,
                                           c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        ntk_dgemm_tn(Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C (m x n) = alpha * A (m x k) * B (k x n) + beta * C; row-major.
    public static func multiply(m: Int, n: Int, k: Int, alpha: Double = 1,
                                a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int,
                                beta: Double = 0,
                                c: UnsafeMutablePointer<Double>, ldc: Int) {
        if m == 0 || n == 0 { return }
        ntk_dgemm_nn(Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
