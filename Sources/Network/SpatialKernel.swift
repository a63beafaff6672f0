import Foundation

/// The infinite-width NNGP and NTK of convolutional networks (the CNTK), as
/// neural-tangents 0.6.5's `kernel_fn` computes them (docs/maths.md §7).
///
/// For a pair of samples the state is the covariance between the positions of one and the
/// positions of the other: K[p, p'] and Θ[p, p'], with each sample's own variances q[p] at
/// every position (what the activations need). A convolution averages over the window
/// offsets that both positions share, K'[p, p'] = (1/V) Σ_v K[p + v, p' + v] (padding
/// reads zeros, CIRCULAR wraps), then acts as a dense layer entry by entry; an activation
/// is the dense map entry by entry; average pooling averages over both windows,
/// K'[p, p'] = (1/V²) Σ_{v,v'} K[p + v, p' + v']; global average pooling averages every
/// entry and flatten the diagonal. Only convolutions between a pooling layer and the
/// flattening need off-diagonal entries: elsewhere the state is the diagonal K[p, p]
/// alone (neural-tangents' `diagonal_spatial`), P values per pair instead of P².
///
/// A pooling layer also needs each sample's own covariance off the diagonal: before the
/// pairs, every sample runs the same maps against itself with full spatial blocks, and the
/// variances it has after each pooling layer are handed to the pairs.
struct SpatialProgram: Sendable {
    /// The per-sample input shape: spatial axes, then channels.
    let inputShape: [Int]
    /// Activations applied to the raw inputs, before the first parameterized layer.
    let inputActivations: [Activation]
    /// The maps up to the flattening, then the flat maps after it.
    let steps: [any KernelMap]
    let flatSteps: [any KernelMap]
    /// Whether the input state keeps full spatial blocks.
    let fullAtInput: Bool
    /// Pooling layers (average and global), whose per-sample variances come from the
    /// samples' own runs.
    let poolCount: Int

    var positions: Int { inputShape.dropLast().reduce(1, *) }
    var channels: Int { inputShape.last! }
}

/// The state of m x n pairs: full, entry ((i·P + p), (j·P + p')) of an (m·P) x (n·P)
/// matrix with q₁[i·P + p], q₂[j·P + p']; diagonal, entry (p, i, j) of P matrices m x n with
/// q₁[p·m + i], q₂[p·n + j]; flat, entry (i, j) with q₁[i], q₂[j].
struct SpatialState {
    enum Layout { case full, diagonal, flat }
    var layout: Layout
    var positions: Int
    let m: Int
    let n: Int
    var k: [Double]
    var t: [Double]
    var q1: [Double]
    var q2: [Double]

    mutating func withBuffers(_ body: (UnsafeMutableBufferPointer<Double>, UnsafeMutableBufferPointer<Double>,
                                       UnsafeMutableBufferPointer<Double>, UnsafeMutableBufferPointer<Double>) -> Void) {
        k.withUnsafeMutableBufferPointer { kp in
            t.withUnsafeMutableBufferPointer { tp in
                q1.withUnsafeMutableBufferPointer { a in
                    q2.withUnsafeMutableBufferPointer { b in body(kp, tp, a, b) }
                }
            }
        }
    }

    /// Applies a map of `apply(k:t:q1:q2:)` form: to the whole state when full or flat, to
    /// each position's m x n matrix when diagonal.
    mutating func entrywise(_ map: (UnsafeMutableBufferPointer<Double>, UnsafeMutableBufferPointer<Double>,
                                    UnsafeMutableBufferPointer<Double>, UnsafeMutableBufferPointer<Double>) -> Void) {
        let m = self.m, n = self.n, positions = self.positions
        let diagonal = layout == .diagonal
        withBuffers { k, t, q1, q2 in
            if !diagonal {
                map(k, t, q1, q2)
                return
            }
            for p in 0..<positions {
                map(UnsafeMutableBufferPointer(rebasing: k[(p * m * n)..<((p + 1) * m * n)]),
                    UnsafeMutableBufferPointer(rebasing: t[(p * m * n)..<((p + 1) * m * n)]),
                    UnsafeMutableBufferPointer(rebasing: q1[(p * m)..<((p + 1) * m)]),
                    UnsafeMutableBufferPointer(rebasing: q2[(p * n)..<((p + 1) * n)]))
            }
        }
    }
}

extension SpatialProgram {
    /// Both kernels for all pairs of a block, as `InfiniteWidthKernel.evaluate`; with
    /// `upper` (x and y the same block) groups of pairs wholly below the diagonal are
    /// skipped and left zero.
    func evaluate(x: UnsafeBufferPointer<Double>, m: Int, y: UnsafeBufferPointer<Double>, n: Int, upper: Bool = false) -> (nngp: [Double], ntk: [Double]) {
        let d = inputShape.reduce(1, *)
        var nngp = [Double](repeating: 0, count: m * n)
        var ntk = [Double](repeating: 0, count: m * n)
        if m == 0 || n == 0 { return (nngp, ntk) }
        let rowsX = transformed(x, count: m), rowsY = transformed(y, count: n)
        // Each sample's variances after every pooling layer, from its run against itself.
        let poolsX = poolVariances(rowsX, count: m), poolsY = poolVariances(rowsY, count: n)
        // Pairs in groups whose state stays within 65536 values (half a megabyte per
        // array: in the caches; measured 15% faster than a million on the CNN benchmark).
        let p = positions
        let perPair = fullAtInput ? p * p : p
        let side = Swift.max(1, Int((Double(1 << 16) / Double(perPair)).squareRoot()))
        var i0 = 0
        while i0 < m {
            let mb = Swift.min(side, m - i0)
            var j0 = 0
            while j0 < n {
                let nb = Swift.min(side, n - j0)
                if upper && j0 + nb <= i0 {
                    j0 += nb
                    continue
                }
                var state = rowsX.withUnsafeBufferPointer { xs in
                    rowsY.withUnsafeBufferPointer { ys in
                        input(UnsafeBufferPointer(rebasing: xs[(i0 * d)..<((i0 + mb) * d)]), m: mb,
                              UnsafeBufferPointer(rebasing: ys[(j0 * d)..<((j0 + nb) * d)]), n: nb)
                    }
                }
                SpatialRun(pools: { ordinal, size in
                    (Array(poolsX[ordinal][(i0 * size)..<((i0 + mb) * size)]), Array(poolsY[ordinal][(j0 * size)..<((j0 + nb) * size)]))
                }).apply(steps, &state)
                precondition(state.layout == .flat)
                state.withBuffers { k, t, q1, q2 in InfiniteWidthKernel.apply(flatSteps, k: k, t: t, q1: q1, q2: q2) }
                for i in 0..<mb {
                    for j in 0..<nb {
                        nngp[(i0 + i) * n + j0 + j] = state.k[i * nb + j]
                        ntk[(i0 + i) * n + j0 + j] = state.t[i * nb + j]
                    }
                }
                j0 += nb
            }
            i0 += mb
        }
        return (nngp, ntk)
    }

    /// The rows after the activations that precede the first parameterized layer.
    private func transformed(_ rows: UnsafeBufferPointer<Double>, count: Int) -> [Double] {
        var values = Array(rows.prefix(count * inputShape.reduce(1, *)))
        for activation in inputActivations {
            for e in values.indices { values[e] = activation.value(values[e]) }
        }
        return values
    }

    /// Per pooling layer, every sample's variances after it (samples × positions), from the
    /// sample's own run with full spatial blocks.
    private func poolVariances(_ rows: [Double], count: Int) -> [[Double]] {
        guard poolCount > 0 else { return [] }
        let d = inputShape.reduce(1, *)
        var result = [[Double]](repeating: [], count: poolCount)
        rows.withUnsafeBufferPointer { all in
            for sample in 0..<count {
                let row = UnsafeBufferPointer(rebasing: all[(sample * d)..<((sample + 1) * d)])
                var state = input(row, m: 1, row, n: 1, full: true)
                SpatialRun(pools: nil) { ordinal, variances in result[ordinal] += variances }.apply(steps, &state)
            }
        }
        return result
    }

    /// The input state: K[(i, p), (j, p')] = x_{i,p} · y_{j,p'} / C (full) or its diagonal.
    private func input(_ x: UnsafeBufferPointer<Double>, m: Int, _ y: UnsafeBufferPointer<Double>, n: Int, full: Bool? = nil) -> SpatialState {
        let p = positions, c = channels
        let useFull = full ?? fullAtInput
        let scale = 1 / Double(c)
        func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>) -> Double {
            var s = 0.0
            for e in 0..<c { s += a[e] * b[e] }
            return s * scale
        }
        let xp = x.baseAddress!, yp = y.baseAddress!
        if useFull {
            var k = [Double](repeating: 0, count: m * p * n * p)
            let width = n * p
            for a in 0..<(m * p) { for b in 0..<width { k[a * width + b] = dot(xp + a * c, yp + b * c) } }
            let q1 = (0..<(m * p)).map { dot(xp + $0 * c, xp + $0 * c) }
            let q2 = (0..<(n * p)).map { dot(yp + $0 * c, yp + $0 * c) }
            return SpatialState(layout: .full, positions: p, m: m, n: n, k: k, t: [Double](repeating: 0, count: k.count), q1: q1, q2: q2)
        }
        var k = [Double](repeating: 0, count: p * m * n)
        var q1 = [Double](repeating: 0, count: p * m), q2 = [Double](repeating: 0, count: p * n)
        for position in 0..<p {
            for i in 0..<m {
                let a = xp + (i * p + position) * c
                q1[position * m + i] = dot(a, a)
                for j in 0..<n { k[(position * m + i) * n + j] = dot(a, yp + (j * p + position) * c) }
            }
            for j in 0..<n { let b = yp + (j * p + position) * c; q2[position * n + j] = dot(b, b) }
        }
        return SpatialState(layout: .diagonal, positions: p, m: m, n: n, k: k, t: [Double](repeating: 0, count: k.count), q1: q1, q2: q2)
    }

    /// K'[p, p'] = (1/V) Σ_v K[p + v, p' + v] (both reads inside the input), the same for Θ;
    /// q'[p] = (1/V) Σ_v q[p + v].
    static func windowMean(_ windows: WindowMap, _ state: inout SpatialState) {
        let volume = windows.windowVolume, pin = windows.inputPositions, pout = windows.outputPositions
        let scale = 1 / Double(volume)
        let m = state.m, n = state.n
        let index = windows.index
        func meanOfVariances(_ q: [Double], samples: Int, full: Bool) -> [Double] {
            var result = [Double](repeating: 0, count: samples * pout)
            for s in 0..<samples {
                for p in 0..<pout {
                    var sum = 0.0
                    for v in 0..<volume {
                        let a = Int(index[p * volume + v])
                        if a >= 0 { sum += full ? q[s * pin + a] : q[a * samples + s] }
                    }
                    result[full ? s * pout + p : p * samples + s] = sum * scale
                }
            }
            return result
        }
        switch state.layout {
        case .flat:
            preconditionFailure("a convolution on a flat state")
        case .diagonal:
            var k = [Double](repeating: 0, count: pout * m * n), t = k
            let block = m * n
            for p in 0..<pout {
                for v in 0..<volume {
                    let a = Int(index[p * volume + v])
                    guard a >= 0 else { continue }
                    for e in 0..<block {
                        k[p * block + e] += state.k[a * block + e]
                        t[p * block + e] += state.t[a * block + e]
                    }
                }
                for e in 0..<block { k[p * block + e] *= scale; t[p * block + e] *= scale }
            }
            state.q1 = meanOfVariances(state.q1, samples: m, full: false)
            state.q2 = meanOfVariances(state.q2, samples: n, full: false)
            state.k = k
            state.t = t
        case .full:
            // Row (i, p) of the result sums, over the offsets v whose read a = p + v is inside,
            // row (i, a) of the input gathered at columns (j, p' + v): per v, one index
            // vector over p' serves every row and every column sample.
            let widthIn = n * pin, widthOut = n * pout
            var k = [Double](repeating: 0, count: m * pout * widthOut), t = k
            // Per offset v, the output positions p' whose read p' + v is inside, as runs of
            // consecutive p' reading consecutive inputs: (first output, first input, length).
            var runs: [[(out: Int, from: Int, length: Int)]] = []
            for v in 0..<volume {
                var list: [(out: Int, from: Int, length: Int)] = []
                for p2 in 0..<pout {
                    let b = Int(index[p2 * volume + v])
                    if b < 0 { continue }
                    if let last = list.last, last.out + last.length == p2, last.from + last.length == b {
                        list[list.count - 1].length += 1
                    } else {
                        list.append((p2, b, 1))
                    }
                }
                runs.append(list)
            }
            state.k.withUnsafeBufferPointer { kin in
                state.t.withUnsafeBufferPointer { tin in
                    k.withUnsafeMutableBufferPointer { kout in
                        t.withUnsafeMutableBufferPointer { tout in
                            let ko = kout.baseAddress!, to = tout.baseAddress!, ki = kin.baseAddress!, ti = tin.baseAddress!
                            for i in 0..<m {
                                for p in 0..<pout {
                                    let out = (i * pout + p) * widthOut
                                    for v in 0..<volume {
                                        let a = Int(index[p * volume + v])
                                        if a < 0 { continue }
                                        let row = (i * pin + a) * widthIn
                                        for j in 0..<n {
                                            let source = row + j * pin, target = out + j * pout
                                            for run in runs[v] {
                                                let kd = ko + target + run.out, td = to + target + run.out
                                                let ks = ki + source + run.from, ts = ti + source + run.from
                                                for e in 0..<run.length {
                                                    kd[e] += ks[e]
                                                    td[e] += ts[e]
                                                }
                                            }
                                        }
                                    }
                                    for e in out..<(out + widthOut) { ko[e] *= scale; to[e] *= scale }
                                }
                            }
                        }
                    }
                }
            }
            state.q1 = meanOfVariances(state.q1, samples: m, full: true)
            state.q2 = meanOfVariances(state.q2, samples: n, full: true)
            state.k = k
            state.t = t
        }
        state.positions = pout
    }

    /// K'[p, p'] = (1/V²) Σ_{v,v'} K[p + v, p' + v'] on full blocks (rows, then columns).
    static func pool(_ windows: WindowMap, _ state: inout SpatialState) {
        precondition(state.layout == .full, "pooling needs full spatial blocks")
        let volume = windows.windowVolume, pin = windows.inputPositions, pout = windows.outputPositions
        let scale = 1 / Double(volume)
        let m = state.m, n = state.n
        let index = windows.index
        func poolBoth(_ values: [Double]) -> [Double] {
            // Rows: (m·pout) x (n·pin).
            let widthIn = n * pin
            var rows = [Double](repeating: 0, count: m * pout * widthIn)
            for i in 0..<m {
                for p in 0..<pout {
                    let target = (i * pout + p) * widthIn
                    for v in 0..<volume {
                        let a = Int(index[p * volume + v])
                        guard a >= 0 else { continue }
                        let source = (i * pin + a) * widthIn
                        for e in 0..<widthIn { rows[target + e] += values[source + e] }
                    }
                    for e in 0..<widthIn { rows[target + e] *= scale }
                }
            }
            // Columns: (m·pout) x (n·pout).
            let widthOut = n * pout
            var result = [Double](repeating: 0, count: m * pout * widthOut)
            for r in 0..<(m * pout) {
                for j in 0..<n {
                    for p in 0..<pout {
                        var sum = 0.0
                        for v in 0..<volume {
                            let b = Int(index[p * volume + v])
                            if b >= 0 { sum += rows[r * widthIn + j * pin + b] }
                        }
                        result[r * widthOut + j * pout + p] = sum * scale
                    }
                }
            }
            return result
        }
        state.k = poolBoth(state.k)
        state.t = poolBoth(state.t)
        state.positions = pout
        // The variances are set by the caller (they need each sample's own block).
        state.q1 = [Double](repeating: 0, count: m * pout)
        state.q2 = [Double](repeating: 0, count: n * pout)
    }

    /// K'(i, j) = (1/P²) Σ_{p,p'} K[(i, p), (j, p')]: full blocks → flat.
    static func globalPool(_ state: inout SpatialState) {
        precondition(state.layout == .full, "global pooling needs full spatial blocks")
        let p = state.positions, m = state.m, n = state.n
        let scale = 1 / Double(p * p)
        func reduce(_ values: [Double]) -> [Double] {
            var result = [Double](repeating: 0, count: m * n)
            let width = n * p
            for i in 0..<m {
                for a in 0..<p {
                    let row = (i * p + a) * width
                    for j in 0..<n {
                        var sum = 0.0
                        for b in 0..<p { sum += values[row + j * p + b] }
                        result[i * n + j] += sum
                    }
                }
            }
            return result.map { $0 * scale }
        }
        state.k = reduce(state.k)
        state.t = reduce(state.t)
        state.layout = .flat
        state.positions = 1
        state.q1 = [Double](repeating: 0, count: m)
        state.q2 = [Double](repeating: 0, count: n)
    }

    /// K'(i, j) = (1/P) Σ_p K[(i, p), (j, p)], q'(i) = (1/P) Σ_p q[(i, p)]: → flat.
    static func flatten(_ state: inout SpatialState) {
        if state.layout == .full { toDiagonal(&state) }
        guard state.layout == .diagonal else { return }
        let p = state.positions, m = state.m, n = state.n
        let scale = 1 / Double(p)
        var k = [Double](repeating: 0, count: m * n), t = k
        var q1 = [Double](repeating: 0, count: m), q2 = [Double](repeating: 0, count: n)
        for position in 0..<p {
            for e in 0..<(m * n) { k[e] += state.k[position * m * n + e]; t[e] += state.t[position * m * n + e] }
            for i in 0..<m { q1[i] += state.q1[position * m + i] }
            for j in 0..<n { q2[j] += state.q2[position * n + j] }
        }
        state.k = k.map { $0 * scale }
        state.t = t.map { $0 * scale }
        state.q1 = q1.map { $0 * scale }
        state.q2 = q2.map { $0 * scale }
        state.layout = .flat
        state.positions = 1
    }

    /// Full blocks → their diagonals (and the variances to the diagonal layout).
    static func toDiagonal(_ state: inout SpatialState) {
        guard state.layout == .full else { return }
        let p = state.positions, m = state.m, n = state.n
        let width = n * p
        var k = [Double](repeating: 0, count: p * m * n), t = k
        var q1 = [Double](repeating: 0, count: p * m), q2 = [Double](repeating: 0, count: p * n)
        for position in 0..<p {
            for i in 0..<m {
                for j in 0..<n {
                    let e = (i * p + position) * width + j * p + position
                    k[(position * m + i) * n + j] = state.k[e]
                    t[(position * m + i) * n + j] = state.t[e]
                }
                q1[position * m + i] = state.q1[i * p + position]
            }
            for j in 0..<n { q2[position * n + j] = state.q2[j * p + position] }
        }
        state.k = k
        state.t = t
        state.q1 = q1
        state.q2 = q2
        state.layout = .diagonal
    }
}

extension InfiniteWidthKernel {
    /// Bytes one rank needs for the convolutional recursion's states of `spec` on samples
    /// of shape `dataShape` (0 for flat inputs): with pooling, every sample's own run holds
    /// full P x P blocks of the widest layer (about ten arrays of them at once), and a group
    /// of pairs at least 65536 values per array; without, only the groups of pairs.
    public static func spatialStateBytes(spec: ModelSpec, inputShape dataShape: [Int]) -> Double {
        guard let plan = try? NetworkPlan(spec: spec, dataShape: dataShape, shapesOnly: true), plan.inputShape.count > 1 else { return 0 }
        var positions = Double(plan.inputShape.dropLast().reduce(1, *))
        for g in plan.geometry { positions = Swift.max(positions, Double(g.inputPositions), Double(g.positions)) }
        let full = KernelBuilder.needsFull(spec.layers, after: false)
        return 8 * 10 * Swift.max(full ? positions * positions : positions, 65536)
    }
}

extension SpatialProgram {
    /// The maps of `spec` on spatial inputs of shape `shape`: those of the layers up to the
    /// flattening (the first top-level layer that flattens: flatten or global pooling),
    /// then the flat maps of the rest. Refuses what neural-tangents refuses (an activation
    /// or a residual sum of a value that is not Gaussian), naming the layer.
    init(spec: ModelSpec, inputShape shape: [Int]) throws(ModelError) {
        let layers = spec.layers
        guard let cut = layers.firstIndex(where: { $0.base.flattens }) else {
            throw ModelError("the network never flattens its spatial input (give it a flatten or global_avg_pool layer)")
        }
        let prefix = Array(layers[...cut])
        var builder = KernelBuilder(parameterization: spec.parameterization, shape: shape, spatial: true)
        let steps = try builder.maps(of: prefix, parent: nil)
        var flat = KernelBuilder(parameterization: spec.parameterization, shape: [builder.shape.reduce(1, *)], spatial: false)
        flat.seenParameterized = builder.seenParameterized
        flat.gaussian = builder.gaussian
        let flatSteps = try flat.maps(of: Array(layers[(cut + 1)...]), parent: nil, offset: cut + 1)
        self.init(inputShape: shape, inputActivations: builder.inputActivations + flat.inputActivations, steps: steps,
                  flatSteps: flatSteps, fullAtInput: KernelBuilder.needsFull(prefix, after: false), poolCount: builder.poolCount)
    }
}

/// How the spatial maps of one group of pairs run: where pooling layers get the samples'
/// own variances (`pools`, from the samples' runs against themselves), or, in such a run,
/// where they record them.
struct SpatialRun {
    /// (pooling ordinal, values per sample) → the variances of the group's row and column
    /// samples; nil in a sample's run against itself.
    let pools: ((Int, Int) -> ([Double], [Double]))?
    var record: (Int, [Double]) -> Void = { _, _ in }

    /// Applies `maps` in order.
    func apply(_ maps: [any KernelMap], _ state: inout SpatialState) {
        for map in maps { map.apply(&state, self) }
    }

    /// After pooling layer `ordinal`: the pairs' variances from `pools`, or, for a sample
    /// against itself, the diagonal of its block (recorded).
    func setPooledVariances(_ state: inout SpatialState, ordinal: Int) {
        let size = state.layout == .flat ? 1 : state.positions
        if let pools {
            (state.q1, state.q2) = pools(ordinal, size)
            return
        }
        var diagonal = [Double](repeating: 0, count: size)
        for p in 0..<size { diagonal[p] = state.k[p * size + p] }
        state.q1 = diagonal
        state.q2 = diagonal
        record(ordinal, diagonal)
    }
}

extension RectifiedStep {
    /// On spatial states, `applyVectorized` entry by entry.
    func apply(_ state: inout SpatialState, _ run: SpatialRun) {
        state.entrywise { k, t, q1, q2 in applyVectorized(k: k, t: t, q1: q1, q2: q2) }
    }

    /// `apply` four entries at a time, with `VectorMath.atan2` for the angle (within two
    /// ulps of libm's): the spatial states have P² entries per pair, and the angle is most
    /// of their cost. An angle of exactly 0 (identical rows) and π/2 (s = q₁₂ = 0) stay exact.
    func applyVectorized(k: UnsafeMutableBufferPointer<Double>, t: UnsafeMutableBufferPointer<Double>,
                         q1: UnsafeMutableBufferPointer<Double>, q2: UnsafeMutableBufferPointer<Double>) {
        let n = q2.count
        let vfactor = SIMD4<Double>(repeating: factor), vhalf = SIMD4<Double>(repeating: half)
        for i in 0..<q1.count {
            let q11 = SIMD4<Double>(repeating: q1[i])
            let row = i * n
            var j = 0
            while j + 4 <= n {
                let q12 = VectorMath.load(k.baseAddress! + row + j)
                let q22 = VectorMath.load(q2.baseAddress! + j)
                let gap = q11 * q22 - q12 * q12
                let s = gap.replacing(with: 0, where: gap .< SIMD4<Double>(repeating: 0)).squareRoot()
                let angle = VectorMath.atan2(s, q12)
                let dotSigma = vhalf - vfactor * angle
                VectorMath.store(vfactor * s + dotSigma * q12, k.baseAddress! + row + j)
                VectorMath.store(VectorMath.load(t.baseAddress! + row + j) * dotSigma, t.baseAddress! + row + j)
                j += 4
            }
            if j < n {
                // The tail through the same four-lane arithmetic (padded with copies of the
                // last entry), so that an entry's value does not depend on where it falls.
                var q12 = SIMD4<Double>(repeating: k[row + n - 1]), q22 = SIMD4<Double>(repeating: q2[n - 1])
                var tt = SIMD4<Double>(repeating: t[row + n - 1])
                for lane in 0..<(n - j) { q12[lane] = k[row + j + lane]; q22[lane] = q2[j + lane]; tt[lane] = t[row + j + lane] }
                let gap = q11 * q22 - q12 * q12
                let s = gap.replacing(with: 0, where: gap .< SIMD4<Double>(repeating: 0)).squareRoot()
                let dotSigma = vhalf - vfactor * VectorMath.atan2(s, q12)
                let newK = vfactor * s + dotSigma * q12, newT = tt * dotSigma
                for lane in 0..<(n - j) { k[row + j + lane] = newK[lane]; t[row + j + lane] = newT[lane] }
            }
        }
        for i in 0..<q1.count { q1[i] = half * q1[i] }
        for j in 0..<n { q2[j] = half * q2[j] }
    }
}

extension VectorMath {
    /// atan2(y, x) for y ≥ 0, four lanes: Cephes' atan (a rational approximation on
    /// |t| ≤ 0.66 after reduction by π/4 or π/2, relative error below 2e-16), with the
    /// quadrant from the sign of x; atan2(0, 0) = π/2 as `RectifiedStep` wants it.
    @inline(__always)
    static func atan2(_ y: SIMD4<Double>, _ x: SIMD4<Double>) -> SIMD4<Double> {
        typealias V = SIMD4<Double>
        let negativeX = x .< V(repeating: 0)
        let ax = x.replacing(with: -x, where: negativeX)
        let zeroX = ax .== V(repeating: 0)
        // The reduced argument with one division: y/|x|, or −|x|/y beyond tan(3π/8), or
        // (y − |x|)/(y + |x|) beyond 0.66 (the same comparisons on y against |x|).
        let big = y .> V(repeating: 2.41421356237309504880) * ax
        let notBig = .!big
        let middle = (y .> V(repeating: 0.66) * ax) .& notBig
        var numerator = y, denominator = ax.replacing(with: 1, where: zeroX)
        numerator.replace(with: -ax, where: big)
        denominator.replace(with: y, where: big)
        numerator.replace(with: y - ax, where: middle)
        denominator.replace(with: y + ax, where: middle)
        let tangent = numerator / denominator
        var base = V(repeating: 0)
        var extra = V(repeating: 0)
        let moreBits = 6.123233995736765886130e-17
        base.replace(with: Double.pi / 2, where: big)
        extra.replace(with: moreBits, where: big)
        base.replace(with: Double.pi / 4, where: middle)
        extra.replace(with: 0.5 * moreBits, where: middle)
        let z = tangent * tangent
        var p = V(repeating: -8.750608600031904122785e-1)
        p = p * z + V(repeating: -1.615753718733365076637e1)
        p = p * z + V(repeating: -7.500855792314704667340e1)
        p = p * z + V(repeating: -1.228866684490136173410e2)
        p = p * z + V(repeating: -6.485021904942025371773e1)
        var q = z + V(repeating: 2.485846490142306297962e1)
        q = q * z + V(repeating: 1.650270098316988542046e2)
        q = q * z + V(repeating: 4.328810604912902668951e2)
        q = q * z + V(repeating: 4.853903996359136964868e2)
        q = q * z + V(repeating: 1.945506571482613964425e2)
        var r = z * p / q
        r = tangent * r + tangent
        var angle = base + (r + extra)
        // x < 0: π − atan(y/|x|); x = 0: π/2.
        angle.replace(with: V(repeating: Double.pi) - angle, where: negativeX)
        angle.replace(with: Double.pi / 2, where: zeroX)
        return angle
    }
}
