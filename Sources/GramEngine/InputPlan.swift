import Foundation
import Network
import NumPyIO

/// What a job's inputs will occupy, known from the data files' headers, the model and the
/// parameter file's size alone: before any data is read, any parameter drawn or any
/// archive inflated, so that a job too large for its memory is refused at once instead of
/// being killed (or swapping) halfway.
///
/// Counts are doubles: a network whose parameter count does not fit in an integer (widths
/// near 2^31 in several layers) is still planned, and refused.
public struct InputPlan: Sendable {
    /// N, M (the second set, if any) and d, from the headers.
    public var n: Int
    public var m: Int?
    public var inputWidth: Int
    /// The shape of one sample in the data file ([d] for flat rows).
    public var inputShape: [Int]
    public var spec: ModelSpec
    /// P, the parameter count of the finite network (0 for infinite-width kernels).
    public var parameterCount: Double
    /// Σ_l (n_in + k n_out): the structured method's per-sample factors, in doubles.
    public var factorsPerSample: Double
    /// Bytes a rank holds for its inputs at their peak while loading: the data 8(N + M)d, the
    /// parameters three times (the archive's arrays, their conversion, the network's copy)
    /// and the parameter file itself.
    public var bytes: Double
    /// Of `bytes`, what the infinite-width recursion of a convolutional network holds (its
    /// spatial covariance blocks).
    public var kernelStateBytes: Double = 0

    /// Reads the data headers and the model and sizes the network. Throws what reading the
    /// headers and the model throws (65, 66), and refuses a model whose dense layers are
    /// wider than the tool handles.
    static func inspect(data: String, data2: String?, model: ModelSource, parameters: ParameterSource?) throws(NTKError) -> InputPlan {
        let header = try Inputs.dataHeader(data, role: "--data")
        let n = header.shape[0], shape = Inputs.sampleShape(header)
        var m: Int? = nil
        if let data2 {
            let second = try Inputs.dataHeader(data2, role: "--data2")
            if Inputs.sampleShape(second) != shape {
                let what = shape.count == 1 && second.shape.count == 2 ? "\(second.shape[1]) features per sample but --data has \(shape[0])"
                    : "samples of shape \(Inputs.format(Inputs.sampleShape(second))) but --data has \(Inputs.format(shape))"
                throw NTKError(.dataError, "--data2 file \(data2) has \(what)")
            }
            m = second.shape[0]
        }
        let spec: ModelSpec
        switch model {
        case .file(let path): spec = try Inputs.model(path)
        case .spec(let s):
            do { try s.validate() } catch { throw NTKError(.usage, error.message) }
            spec = s
        }
        do { try spec.validate(inputShape: shape) } catch {
            let data = shape.count == 1 ? "d = \(shape[0]) features" : "samples of shape \(Inputs.format(shape))"
            throw NTKError(.dataError, "the model does not fit the data's \(data): \(error.message)")
        }
        var fileBytes = 0.0
        if case .file(let path)? = parameters {
            let (fd, size) = try Inputs.open(path, role: "--params")
            close(fd)
            fileBytes = Double(size)
        }
        return InputPlan(n: n, m: m, inputShape: shape, spec: spec, finite: parameters != nil, parameterFileBytes: fileBytes)
    }

    /// The plan of known sizes: N (and M) samples of width d through `spec`, a finite
    /// network (`finite`) or an infinite-width kernel, parameters read from a file of
    /// `parameterFileBytes` bytes (0: drawn from a seed).
    public init(n: Int, m: Int?, inputWidth d: Int, spec: ModelSpec, finite: Bool, parameterFileBytes: Double) {
        self.init(n: n, m: m, inputShape: [d], spec: spec, finite: finite, parameterFileBytes: parameterFileBytes)
    }

    public init(n: Int, m: Int?, inputShape: [Int], spec: ModelSpec, finite: Bool, parameterFileBytes: Double) {
        let d = inputShape.reduce(1, *)
        self.n = n
        self.m = m
        self.inputWidth = d
        self.inputShape = inputShape
        self.spec = spec
        let sizes = spec.sizes(inputShape: inputShape)
        parameterCount = finite ? sizes.parameters : 0
        factorsPerSample = finite ? sizes.factorsPerSample : 0
        bytes = 8 * Double(n + (m ?? 0)) * Double(d) + 3 * 8 * parameterCount + parameterFileBytes
        if !finite {
            kernelStateBytes = InfiniteWidthKernel.spatialStateBytes(spec: spec, inputShape: inputShape)
            bytes += kernelStateBytes
        }
    }

    /// Bytes of one sample's per-sample quantities for `method` (k P doubles for the
    /// explicit gradients).
    func perSampleBytes(_ method: GradientMethod, forms: FactorForms = .auto, outputKernel: OutputKernel = .full) -> Double {
        if method == .explicit { return 8 * Double(spec.outputCount) * parameterCount }
        // The forms the tiles use (`TileComputer.effective`): the mean and sum kernels collapse
        // the signals before the readout, which changes the forms and sizes of that layer.
        let collapse = outputKernel != .full && spec.outputCount > 1
        if forms == .auto && !collapse { return 8 * factorsPerSample }
        let plan = try? NetworkPlan(spec: spec, dataShape: inputShape, forms: forms, collapseOutputs: collapse, shapesOnly: true)
        return 8 * (plan?.factorsPerSample ?? factorsPerSample)
    }

    /// Refuses (64) inputs that alone exceed `available` bytes on each of `ranks` ranks of a
    /// node, naming what takes the memory. Used by the commands without a tile memory plan.
    public func check(available: Int?, ranks: Int = 1) throws(NTKError) {
        guard let available else { return }
        let needed = Double(ranks) * bytes + Double(MemoryPlan.baseline)
        guard needed > Double(available) else { return }
        throw NTKError(.usage, "the inputs need about \(MemoryPlan.format(needed)) (\(describe)) but \(MemoryPlan.format(Double(available))) is available; use a smaller network or data set, or a node with more memory")
    }

    /// What the inputs hold, for messages.
    var describe: String {
        var parts = ["data \(MemoryPlan.format(8 * Double(n + (m ?? 0)) * Double(inputWidth)))"]
        if parameterCount > 0 { parts.append(String(format: "P = %.4g parameters, %@ each copy", parameterCount, MemoryPlan.format(8 * parameterCount))) }
        if kernelStateBytes > 0 {
            parts.append("the CNTK's spatial covariance blocks \(MemoryPlan.format(kernelStateBytes)) per rank: --kernel empirical, or pooling earlier, needs less")
        }
        return parts.joined(separator: ", ")
    }
}
