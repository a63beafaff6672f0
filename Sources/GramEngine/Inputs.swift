import Foundation
import Network
import NumPyIO

/// A data set: N samples of width d, row-major float64.
public struct DataSet: Sendable {
    public let count: Int
    public let width: Int
    public let values: [Double]

    public init(count: Int, width: Int, values: [Double]) {
        precondition(values.count == count * width)
        self.count = count
        self.width = width
        self.values = values
    }
}

/// Reading the tool's input files, with every failure mapped to one clear `NTKError`.
public enum Inputs {
    /// The bytes of an input file; a missing file, a directory or an unreadable file is
    /// `noInput` (66). `role` names the flag in messages.
    public static func read(_ path: String, role: String) throws(NTKError) -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw NTKError(.noInput, "\(role) file \(path) does not exist")
        }
        if isDirectory.boolValue { throw NTKError(.noInput, "\(role) path \(path) is a directory, not a file") }
        guard FileManager.default.isReadableFile(atPath: path), let data = FileManager.default.contents(atPath: path) else {
            throw NTKError(.noInput, "\(role) file \(path) cannot be read (check its permissions)")
        }
        return data
    }

    /// A data set from a 2-D .npy file (float64 or float32; integer arrays are converted).
    /// Refuses other ranks, empty sets, non-finite values (`dataError`, 65).
    public static func dataSet(_ path: String, role: String = "--data") throws(NTKError) -> DataSet {
        let bytes = try read(path, role: role)
        let array: NPYArray
        do {
            array = try NPYFormat.decode(bytes)
        } catch {
            throw NTKError(.dataError, "\(role) file \(path) is not a valid .npy file: \(error)")
        }
        guard array.shape.count == 2 else {
            throw NTKError(.dataError, "\(role) file \(path) must hold a 2-D array (N, d), but its shape is \(format(array.shape))")
        }
        if array.dtype == .bool { throw NTKError(.dataError, "\(role) file \(path) holds booleans; expected float64 or float32") }
        let n = array.shape[0], d = array.shape[1]
        if n == 0 { throw NTKError(.dataError, "\(role) file \(path) is an empty data set (N = 0)") }
        if d == 0 { throw NTKError(.dataError, "\(role) file \(path) has zero features (d = 0)") }
        let values = array.doubles()
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw NTKError(.dataError, "\(role) file \(path) holds a non-finite value (\(values[bad])) at row \(bad / d), column \(bad % d)")
        }
        return DataSet(count: n, width: d, values: values)
    }

    /// A model from a JSON model file (`dataError` when malformed).
    public static func model(_ path: String) throws(NTKError) -> ModelSpec {
        let bytes = try read(path, role: "--model")
        do {
            return try ModelSpec.decode(json: bytes)
        } catch {
            throw NTKError(.dataError, "--model file \(path): \(error.message)")
        }
    }

    /// Network parameters from a .npz file (W0, b0, W1, …) for `spec` on inputs of
    /// width `inputWidth` (`dataError` when malformed or not matching the model).
    public static func network(spec: ModelSpec, inputWidth: Int, parametersPath path: String) throws(NTKError) -> Network {
        let bytes = try read(path, role: "--params")
        let members: [String: NPYArray]
        do {
            members = try NPZFormat.decode(bytes)
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
            return try Network(spec: spec, inputWidth: inputWidth, named: arrays)
        } catch {
            throw NTKError(.dataError, "--params file \(path) does not fit the model: \(error.message)")
        }
    }

    static func format(_ shape: [Int]) -> String {
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
