/// `{"type": "residual", "layers": [...]}`: y = x + block(x), neural-tangents'
/// `serial(FanOut(2), parallel(serial(*block), Identity()), FanInSum())`. The block is any
/// list of layers whose output shape equals its input shape; blocks nest, and their
/// parameterized layers are numbered in place (depth-first).
public struct ResidualBlock: Sendable, Hashable {
    public var layers: [Layer]
    public init(layers: [Layer]) { self.layers = layers }
}

extension ResidualBlock: LayerType {
    public static let typeNames = ["residual"]
    public static func keys(for type: String) -> [String] { ["type", "layers"] }

    public static func decode(_ object: [String: JSONValue], type: String, path: LayerPath) throws(ModelError) -> ResidualBlock {
        guard case .array(let block)? = object["layers"] else {
            throw ModelError("\(path): a residual block needs \"layers\", a JSON array of layer objects")
        }
        if block.isEmpty { throw ModelError("\(path): a residual block needs at least one layer") }
        return ResidualBlock(layers: try LayerRegistry.decode(block, parent: path))
    }

    public func encode() -> [String: Any] { ["type": "residual", "layers": LayerRegistry.encode(layers)] }

    public func validate(path: LayerPath) throws(ModelError) {
        if layers.isEmpty { throw ModelError("\(path): a residual block needs at least one layer") }
        try LayerRegistry.validate(layers, parent: path)
    }

    public func plan(input shape: [Int], builder: inout PlanBuilder, path: LayerPath) throws(ModelError) -> [Int] {
        let (inner, out) = try builder.plan(layers, shape: shape, parent: path)
        if out != shape {
            let change = shape.count == 1 && out.count == 1 ? "width \(shape[0]) to \(out[0])"
                : "shape \(WindowMap.format(shape)) to \(WindowMap.format(out))"
            throw ModelError("\(path): the residual block maps \(change); y = x + block(x) needs the block to keep its input's shape")
        }
        builder.append(ResidualOperation(block: inner))
        return shape
    }

    /// The sum of independent branches: K ← K + K_block, Θ ← Θ + Θ_block, q ← q + q_block.
    /// Defined only when both branches are Gaussian (neural-tangents' rule for FanInSum).
    public func kernelMaps(_ builder: inout KernelBuilder, path: LayerPath) throws(ModelError) {
        let kinds = builder.isSpatial ? "dense or conv" : "dense"
        if !builder.seenParameterized || !builder.gaussian {
            throw ModelError("\(path): the residual sum's skip branch is not Gaussian in the infinite-width limit (\(builder.seenParameterized ? "the block's input is the output of an activation" : "it is the raw input")); neural-tangents has no analytic kernel for such a sum either: take the skip after a \(kinds) layer (a pre-activation block), or use --kernel empirical")
        }
        let inner = try builder.maps(of: layers, parent: path)
        if !builder.gaussian {
            throw ModelError("\(path): the residual block's output is not Gaussian in the infinite-width limit (it ends with an activation); neural-tangents has no analytic kernel for such a sum either: end the block with a \(kinds) layer, or use --kernel empirical")
        }
        builder.append(ResidualMap(block: inner))
    }

    public var sublayers: [Layer] { layers }

    public func widened(to width: Int) -> ResidualBlock { ResidualBlock(layers: layers.map { $0.base.widenedLayer(to: width) }) }

    public func needsFullSpatial(after: Bool) -> Bool { KernelBuilder.needsFull(layers, after: after) || after }
}

/// x + block(x) forward; backward the block's δ added to the skip's.
struct ResidualOperation: SampleOperation {
    let block: [any SampleOperation]

    func forward(_ x: [Double], walk: inout Network.Walk, keep: Bool) -> [Double] {
        var current = x
        let branch = walk.run(block, current, keep: keep)
        for e in current.indices { current[e] += branch[e] }
        return current
    }

    func backward(_ delta: Network.Walk.Signal, walk: Network.Walk, pass: inout Network.Walk.BackwardPass) -> Network.Walk.Signal? {
        let skip = Network.Walk.Signal(copying: Array(delta.buffer))
        guard let branch = walk.back(block, delta, pass: &pass) else {
            skip.release()
            return nil
        }
        for e in skip.buffer.indices { skip.buffer[e] += branch.buffer[e] }
        branch.release()
        return skip
    }
}

/// The residual sum of the infinite-width state: the block's maps on a copy, then added.
struct ResidualMap: KernelMap {
    let block: [any KernelMap]

    func apply(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
               q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        var bk = Array(k), bt = Array(t), b1 = Array(q1), b2 = Array(q2)
        bk.withUnsafeMutableBufferPointer { kp in
            bt.withUnsafeMutableBufferPointer { tp in
                b1.withUnsafeMutableBufferPointer { p1 in
                    b2.withUnsafeMutableBufferPointer { p2 in InfiniteWidthKernel.apply(block, k: kp, t: tp, q1: p1, q2: p2) }
                }
            }
        }
        for p in 0..<k.count { k[p] += bk[p]; t[p] += bt[p] }
        for i in 0..<q1.count { q1[i] += b1[i] }
        for j in 0..<q2.count { q2[j] += b2[j] }
    }

    func apply(_ state: inout SpatialState, _ run: SpatialRun) {
        var branch = state
        run.apply(block, &branch)
        if branch.layout != state.layout { SpatialProgram.toDiagonal(&state) }
        precondition(branch.layout == state.layout && branch.k.count == state.k.count)
        for e in state.k.indices { state.k[e] += branch.k[e]; state.t[e] += branch.t[e] }
        for e in state.q1.indices { state.q1[e] += branch.q1[e] }
        for e in state.q2.indices { state.q2[e] += branch.q2[e] }
    }
}
