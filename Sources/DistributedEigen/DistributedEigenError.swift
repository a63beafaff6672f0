/// Failures of the distributed eigensolver. Every rank throws the same value (the ranks
/// agree before throwing), so callers can finalize MPI without leaving a peer blocked.
public enum DistributedEigenError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The matrix holds NaN or infinity at (row, column), the first such entry of the
    /// upper triangle in row-major order: ScaLAPACK would hang or return nonsense on it.
    case nonFinite(row: Int, column: Int)
    /// The blocks handed in do not describe the upper triangle exactly once (a block out
    /// of range, of the wrong size, below the diagonal, missing or given twice).
    case invalidBlocks(String)
    /// A ScaLAPACK routine reported a failure (its info code).
    case scalapack(routine: String, info: Int32)
    /// ELPA reported a failure (its error code and text).
    case elpa(stage: Int, code: Int32, message: String)
    /// The result failed a check (the measured value and the threshold).
    case check(name: String, value: Double, threshold: Double)
    /// The problem exceeds ScaLAPACK's 32-bit integers (local sizes or workspace).
    case tooLarge(String)
    /// The BLACS process grid does not match the MPI world.
    case grid(String)
    /// Writing the eigenvectors failed.
    case io(String)

    public var description: String {
        switch self {
        case .nonFinite(let row, let column):
            return "the kernel has a non-finite entry at (\(row), \(column)); refusing to eigendecompose it"
        case .invalidBlocks(let message):
            return "the distributed kernel blocks are inconsistent: \(message)"
        case .scalapack(let routine, let info):
            return "ScaLAPACK \(routine) failed (info = \(info))"
        case .elpa(let stage, let code, let message):
            return "ELPA's \(stage)-stage solver failed: \(message) (error \(code))"
        case .check(let name, let value, let threshold):
            return "the distributed eigendecomposition failed its check: \(name) = \(value) exceeds \(threshold)"
        case .tooLarge(let message):
            return "the problem is too large for ScaLAPACK's 32-bit indices: \(message)"
        case .grid(let message):
            return "the BLACS process grid does not match the MPI world: \(message)"
        case .io(let message):
            return message
        }
    }
}
