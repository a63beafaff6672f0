import Foundation
import Network
import NumPyIO
#if canImport(Glibc)
import Glibc
#endif

/// A data set: N samples of d values each, row-major float64. A sample may have a shape
/// (channels last, e.g. (H, W, C) for images): its values are stored flat in C order.
public struct DataSet: Sendable {
    public let count: Int
    /// d, the values per sample: the product of `sampleShape`.
    public let width: Int
    /// The shape of one sample: [d] for flat rows, (L, C) or (H, W, C) for shaped data.
    public let sampleShape: [Int]
    public let values: [Double]

    public init(count: Int, width: Int, values: [Double]) {
        self.init(count: count, sampleShape: [width], values: values)
    }

    public init(count: Int, sampleShape: [Int], values: [Double]) {
        let width = sampleShape.reduce(1, *)
        precondition(values.count == count * width)
        self.count = count
        self.width = width
        self.sampleShape = sampleShape
        self.values = values
    }
}

/// Reading the tool's input files, with every failure mapped to one clear `NTKError`.
public enum Inputs {
    /// An input file opened for reading, and its size. Refuses (`noInput`, 66) a missing
    /// path (naming a dangling symbolic link or a path component that is a file), a
    /// directory, anything but a regular file (a device such as /dev/zero, a FIFO, a
    /// socket) and a file that cannot be opened (with the system's reason). The caller
    /// closes the descriptor. `role` names the flag in messages.
    public static func open(_ path: String, role: String) throws(NTKError) -> (fd: Int32, size: Int) {
        var status = stat()
        if stat(path, &status) != 0 {
            let code = errno
            var link = stat()
            if lstat(path, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK {
                let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
                throw NTKError(.noInput, "\(role) \(path) is a symbolic link to \(target), which does not exist")
            }
            if code == ENOTDIR { throw NTKError(.noInput, "\(role) \(path) does not exist: a component of the path is not a directory") }
            if code == ENOENT { throw NTKError(.noInput, "\(role) file \(path) does not exist") }
            throw NTKError(.noInput, "\(role) file \(path) cannot be read: \(SystemError.text(code))")
        }
        switch status.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw NTKError(.noInput, "\(role) path \(path) is a directory, not a file")
        case S_IFCHR: throw NTKError(.noInput, "\(role) \(path) is not a regular file (it is a character device)")
        case S_IFBLK: throw NTKError(.noInput, "\(role) \(path) is not a regular file (it is a block device)")
        case S_IFIFO: throw NTKError(.noInput, "\(role) \(path) is not a regular file (it is a FIFO); save the array to a file first")
        case S_IFSOCK: throw NTKError(.noInput, "\(role) \(path) is not a regular file (it is a socket)")
        default: throw NTKError(.noInput, "\(role) \(path) is not a regular file")
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NTKError(.noInput, "\(role) file \(path) cannot be read: \(SystemError.text(errno))") }
        return (fd, Int(status.st_size))
    }

    /// The bytes of an input file of at most `limit` bytes (see `open` for what is
    /// refused); a larger file is `dataError` (65), refused before it is read.
    public static func read(_ path: String, role: String, limit: Int = Int.max, why: String = "") throws(NTKError) -> Data {
        let (fd, size) = try open(path, role: role)
        defer { close(fd) }
        if size > limit {
            throw NTKError(.dataError, "\(role) file \(path) has \(size) bytes, more than the \(limit) \(why.isEmpty ? "it may have" : why)")
        }
        var data = Data(count: size)
        var failure: String? = nil
        data.withUnsafeMutableBytes { (buffer: UnsafeMutableRawBufferPointer) in
            var done = 0
            while done < size {
                let count = pread(fd, buffer.baseAddress! + done, size - done, off_t(done))
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { failure = count == 0 ? "the file shrank while it was read" : SystemError.text(errno); return }
                done += count
            }
        }
        if let failure { throw NTKError(.noInput, "\(role) file \(path) cannot be read: \(failure)") }
        return data
    }

    /// The header of a data file of shape (N, d), (N, L, C) or (N, H, W, C), read without its
    /// data (so that a job can plan its memory before reading anything large). Refuses
    /// other ranks, empty sets and dtypes that are not numbers (`dataError`, 65).
    public static func dataHeader(_ path: String, role: String = "--data") throws(NTKError) -> NPYFileHeader {
        let (fd, _) = try open(path, role: role)
        defer { close(fd) }
        let header: NPYFileHeader
        do {
            header = try NPYFormat.readHeader(fileDescriptor: fd)
        } catch {
            throw NTKError(.dataError, "\(role) file \(path) is not a valid .npy file: \(error)")
        }
        guard (2...4).contains(header.shape.count) else {
            throw NTKError(.dataError, "\(role) file \(path) must hold an array of shape (N, d), (N, L, C) or (N, H, W, C), but its shape is \(format(header.shape))")
        }
        if header.dtype == .bool {
            throw NTKError(.dataError, "\(role) file \(path) holds booleans; expected float64 or float32 (integer arrays are converted)")
        }
        if header.shape[0] == 0 { throw NTKError(.dataError, "\(role) file \(path) is an empty data set (N = 0)") }
        if header.shape.dropFirst().contains(0) { throw NTKError(.dataError, "\(role) file \(path) has zero features (shape \(format(header.shape)))") }
        if header.shape.dropFirst().reduce(1.0, { $0 * Double($1) }) > Double(NetworkPlan.maximumValuesPerSample) {
            throw NTKError(.dataError, "\(role) file \(path) has more than \(NetworkPlan.maximumValuesPerSample) values per sample (shape \(format(header.shape)))")
        }
        return header
    }

    /// The shape of one sample of a data file: its header's shape without N.
    public static func sampleShape(_ header: NPYFileHeader) -> [Int] { Array(header.shape.dropFirst()) }

    /// A data set from a 2-D .npy file (float64 or float32; integer arrays are converted),
    /// read straight into its float64 array (the file is never held whole in memory).
    /// Refuses what `dataHeader` refuses, and non-finite values (`dataError`, 65).
    public static func dataSet(_ path: String, role: String = "--data") throws(NTKError) -> DataSet {
        let header = try dataHeader(path, role: role)
        let (fd, _) = try open(path, role: role)
        defer { close(fd) }
        let values: [Double]
        do {
            values = try NPYFormat.readDoubles(fileDescriptor: fd, header: header)
        } catch {
            throw NTKError(.dataError, "\(role) file \(path) is not a valid .npy file: \(error)")
        }
        let n = header.shape[0], shape = sampleShape(header)
        let d = shape.reduce(1, *)
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw NTKError(.dataError, "\(role) file \(path) holds a non-finite value (\(values[bad])) at row \(bad / d), column \(bad % d) of the flattened sample")
        }
        return DataSet(count: n, sampleShape: shape, values: values)
    }

    /// The largest model file read: a description of even thousands of layers is a few
    /// hundred kilobytes.
    public static let maximumModelBytes = 16 << 20

    /// A model from a JSON model file (`dataError` when malformed).
    public static func model(_ path: String) throws(NTKError) -> ModelSpec {
        let bytes = try read(path, role: "--model", limit: maximumModelBytes, why: "a model file may have")
        do {
            return try ModelSpec.decode(json: bytes)
        } catch {
            throw NTKError(.dataError, "--model file \(path): \(error.message)")
        }
    }

    /// Network parameters from a .npz file (W0, b0, W1, …) for `spec` on data samples of
    /// shape `inputShape` (`dataError` when malformed or not matching the model).
    ///
    /// Nothing larger than the model's parameters is read or inflated: the file is refused
    /// when it is larger than they can take, and each member when it would inflate to more
    /// than its array needs (a member named in the model, or a small unknown one).
    public static func network(spec: ModelSpec, inputWidth: Int, parametersPath path: String) throws(NTKError) -> Network {
        try network(spec: spec, inputShape: [inputWidth], parametersPath: path)
    }

    public static func network(spec: ModelSpec, inputShape: [Int], parametersPath path: String) throws(NTKError) -> Network {
        var bounds: [String: Int] = [:]
        for array in Network.arrayShapes(of: spec, inputShape: inputShape) {
            bounds[array.name] = 8 * array.shape.reduce(1, *) + npyHeaderSlack
        }
        let fileLimit = bounds.values.reduce(0, +) + bounds.count * zipMemberSlack + (1 << 16)
        let bytes = try read(path, role: "--params", limit: fileLimit, why: "that the model's \(bounds.count) parameter arrays can take")
        let members: [String: NPYArray]
        do {
            var decoded: [String: NPYArray] = [:]
            for (name, array) in try NPZFormat.decodeMembers(bytes, maximumMemberBytes: { bounds[$0] ?? unknownMemberBound }) {
                decoded[name] = array
            }
            members = decoded
        } catch {
            throw NTKError(.dataError, "--params file \(path) is not a valid .npz file: \(error)")
        }
        var arrays: [String: (shape: [Int], values: [Double])] = [:]
        for (name, array) in members {
            guard array.dtype == .float64 || array.dtype == .float32 else {
                throw NTKError(.dataError, "--params file \(path): array \(name) has dtype \(array.dtype); expected float64 or float32")
            }
            arrays[name] = (array.shape, array.doubles())
        }
        do {
            return try Network(spec: spec, inputShape: inputShape, named: arrays)
        } catch {
            throw NTKError(.dataError, "--params file \(path) does not fit the model: \(error.message)")
        }
    }

    /// Room for a member's .npy header (numpy writes 128 bytes; 4 KiB allows long ones).
    static let npyHeaderSlack = 4096
    /// Room for a member's ZIP local header and central directory entry.
    static let zipMemberSlack = 1024
    /// The bound on a member the model does not name (it is refused by name afterwards).
    static let unknownMemberBound = 1 << 20

    public static func format(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }
}

/// Training targets: real values (N, k), or integer class labels turned into one-hot rows.
public struct Targets: Sendable {
    /// Y, row-major (N, k).
    public var values: [Double]
    public var count: Int
    public var outputs: Int
    /// The class labels when the file held integers.
    public var labels: [Int]?
}

extension Inputs {
    /// Targets for `count` samples of a model with `outputs` outputs: a float array (N,)
    /// (k = 1) or (N, k), or an integer array (N,) of class labels in 0..<k, which become
    /// one-hot 0/1 rows. Refuses mismatched shapes, labels out of range, non-finite values (65).
    public static func targets(_ path: String, role: String, count: Int, outputs: Int) throws(NTKError) -> Targets {
        let bytes = try read(path, role: role)
        let array: NPYArray
        do { array = try NPYFormat.decode(bytes) } catch {
            throw NTKError(.dataError, "\(role) file \(path) is not a valid .npy file: \(error)")
        }
        guard array.shape.first == count, array.shape.count == 1 || array.shape.count == 2 else {
            throw NTKError(.dataError, "\(role) file \(path) has shape \(format(array.shape)); expected (\(count),) or (\(count), \(outputs)) to match the data")
        }
        let integral = [NPYDType.int64, .int32, .int16, .int8, .uint8].contains(array.dtype)
        if integral {
            guard array.shape.count == 1 else {
                throw NTKError(.dataError, "\(role) file \(path): integer targets are class labels and must be 1-D (\(count),)")
            }
            let labels = (try? array.int64s())?.map { Int($0) } ?? []
            if let bad = labels.first(where: { $0 < 0 || $0 >= outputs }) {
                throw NTKError(.dataError, "\(role) file \(path): class label \(bad) is outside 0..<\(outputs) (the model has \(outputs) outputs; use --out-dim or the model's last width)")
            }
            var values = [Double](repeating: 0, count: count * outputs)
            for (i, label) in labels.enumerated() { values[i * outputs + label] = 1 }
            return Targets(values: values, count: count, outputs: outputs, labels: labels)
        }
        guard array.dtype == .float64 || array.dtype == .float32 else {
            throw NTKError(.dataError, "\(role) file \(path) has dtype \(array.dtype); expected floats or integer labels")
        }
        let k = array.shape.count == 2 ? array.shape[1] : 1
        guard k == outputs else {
            throw NTKError(.dataError, "\(role) file \(path) has \(k) target column(s) but the model has \(outputs) outputs")
        }
        let values = array.doubles()
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw NTKError(.dataError, "\(role) file \(path) holds a non-finite value at row \(bad / k)")
        }
        return Targets(values: values, count: count, outputs: outputs, labels: nil)
    }
}
