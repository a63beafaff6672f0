import CMPI

/// An MPI failure, built from an MPI return code.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    /// The MPI error code (MPI_ERR_*).
    public let code: Int32
    /// MPI's own text for the code.
    public let message: String

    init(code: Int32) {
        self.code = code
        var buffer = [CChar](repeating: 0, count: Int(ntk_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        if MPI_Error_string(code, &buffer, &length) == ntk_mpi_success() {
            self.message = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            self.message = "MPI error \(code)"
        }
    }

    public var description: String { "MPI: \(message) (code \(code))" }
}

/// Turns an MPI return code into a throw: the one place that checks MPI return codes.
@inline(__always)
func check(_ code: Int32) throws(MPIError) {
    if code != ntk_mpi_success() { throw MPIError(code: code) }
}

/// The MPI library's lifetime: initialize once, finalize once.
///
/// `MPIEnvironment.run` is the only way in; a program started without `mpirun` runs as a
/// one-rank world (Open MPI's singleton mode).
public enum MPIEnvironment {
    /// Initializes MPI (thread level FUNNELED), sets MPI_ERRORS_RETURN on the world so
    /// failures become throws, runs `body` with the world communicator and finalizes.
    ///
    /// Every rank must call it. If `body` throws, MPI is still finalized; callers must
    /// make sure all ranks agree on the error first (see `Communicator.agree`), or call
    /// `Communicator.abort` instead, since one rank finalizing while the others sit in a
    /// collective hangs the job.
    public static func run<T>(_ body: (Communicator) throws -> T) throws -> T {
        var provided: Int32 = 0
        try check(MPI_Init_thread(nil, nil, ntk_mpi_thread_funneled(), &provided))
        let world = ntk_mpi_comm_world()
        try check(MPI_Comm_set_errhandler(world, ntk_mpi_errors_return()))
        let communicator = try Communicator(handle: world)
        defer { MPI_Finalize() }
        return try body(communicator)
    }

    /// Wall-clock seconds since an arbitrary point in the past (MPI_Wtime).
    public static func wallTime() -> Double { MPI_Wtime() }
}

/// The element types that can travel through typed MPI calls.
public protocol MPIElement: BitwiseCopyable {
    /// The MPI datatype handle of this element.
    static var mpiDatatype: MPIDatatype { get }
}

/// An MPI datatype handle; only the MPI module can make one.
public struct MPIDatatype: @unchecked Sendable {
    let handle: MPI_Datatype
}

extension Double: MPIElement { public static var mpiDatatype: MPIDatatype { MPIDatatype(handle: ntk_mpi_double()) } }
extension Int64: MPIElement { public static var mpiDatatype: MPIDatatype { MPIDatatype(handle: ntk_mpi_int64()) } }
extension Int32: MPIElement { public static var mpiDatatype: MPIDatatype { MPIDatatype(handle: ntk_mpi_int32()) } }
extension UInt8: MPIElement { public static var mpiDatatype: MPIDatatype { MPIDatatype(handle: ntk_mpi_byte()) } }

/// A reduction operation.
public enum ReduceOperation: Sendable {
    case sum, max, min

    var handle: MPI_Op {
        switch self {
        case .sum: return ntk_mpi_op_sum()
        case .max: return ntk_mpi_op_max()
        case .min: return ntk_mpi_op_min()
        }
    }
}
