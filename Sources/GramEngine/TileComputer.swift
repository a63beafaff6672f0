import Foundation
import Glibc
import MPI
import Network
import TileKernels

/// Computes the values of single tiles of an empirical NTK on one rank.
///
/// Per-sample quantities (the structured factors, or explicit gradients) are computed
/// per block of samples and kept in a cache bounded by `cacheBytes` (least recently
/// used blocks are dropped and recomputed when needed again).
final class TileComputer {
    /// The finite network (empirical kernels), or nil for infinite-width kernels.
    let network: Network?
    /// The infinite-width kernel (analytic and nngp kinds).
    let infinite: InfiniteWidthKernel?
    let kind: KernelKind
    let outputCount: Int
    let plan: TilePlan
    let outputKernel: OutputKernel
    let method: GradientMethod
    let rowData: [Double]
    let columnData: [Double]?
    let cacheBytes: Int

    private struct Key: Hashable { let columnSet: Bool; let block: Int }
    private final class Entry {
        let factors: BatchFactors
        let gradients: [Double]?
        /// The factors rounded to float32 (with `Precision.f32`).
        let single: SingleFactors?
        var lastUse: Int
        let bytes: Int
        /// `single` rounds a private float32 copy; `rounded` is one made elsewhere (shared memory).
        init(factors: BatchFactors, gradients: [Double]?, lastUse: Int, single: Bool = false, rounded: SingleFactors? = nil) {
            self.factors = factors
            self.gradients = gradients
            self.single = rounded ?? (single ? SingleFactors(factors) : nil)
            self.lastUse = lastUse
            self.bytes = factors.byteCount + 8 * (gradients?.count ?? 0) + (self.single?.byteCount ?? 0)
        }
    }
    /// The arithmetic of the structured products.
    var precision: Precision = .f64
    private var cache: [Key: Entry] = [:]
    private var cachedBytes = 0
    private var clock = 0
    /// Seconds spent on per-sample quantities and on tile products (for the summary).
    private(set) var gradientSeconds = 0.0
    private(set) var productSeconds = 0.0

    init(network: Network, plan: TilePlan, outputKernel: OutputKernel, method: GradientMethod, forms: FactorForms = .auto,
         rowData: [Double], columnData: [Double]?, cacheBytes: Int) {
        self.network = Self.effective(network, method: method, outputKernel: outputKernel, forms: forms)
        self.infinite = nil
        self.kind = .empirical
        self.outputCount = network.outputCount
        self.plan = plan
        self.outputKernel = outputKernel
        self.method = method
        self.rowData = rowData
        self.columnData = columnData
        self.cacheBytes = cacheBytes
    }

    /// The network with the layer forms the tiles use: `forms`, and for the mean and sum
    /// kernels of the structured method one signal row per sample before a dense readout
    /// reached through channel-wise maps (docs/maths.md §6.3).
    static func effective(_ network: Network, method: GradientMethod, outputKernel: OutputKernel, forms: FactorForms) -> Network {
        let collapse = method == .structured && outputKernel != .full && network.outputCount > 1
        // `auto` keeps the forms the network was built with (a caller may have chosen them).
        let chosen = forms == .auto ? network.plan.formChoice : forms
        return chosen == network.plan.formChoice && !collapse ? network : network.with(forms: chosen, collapseOutputs: collapse)
    }

    /// A computer of infinite-width tiles (`kind` is .analytic or .nngp).
    init(infinite: InfiniteWidthKernel, kind: KernelKind, outputCount: Int, plan: TilePlan, outputKernel: OutputKernel,
         rowData: [Double], columnData: [Double]?) {
        self.network = nil
        self.infinite = infinite
        self.kind = kind
        self.outputCount = outputCount
        self.plan = plan
        self.outputKernel = outputKernel
        self.method = .structured
        self.rowData = rowData
        self.columnData = columnData
        self.cacheBytes = 0
    }

    /// The number of doubles per sample pair: k² for the full kernel, else 1.
    var entrySize: Int { outputKernel == .full ? outputCount * outputCount : 1 }

    /// An infinite-width tile: K or Θ per pair; k outputs give K ⊗ I_k (mean: K, sum: k·K).
    func computeInfinite(_ tile: TilePlan.Tile) -> [Double] {
        let start = Clock.now
        defer { productSeconds += Clock.seconds(since: start) }
        let rows = plan.rowRange(tile.row), columns = plan.columnRange(tile.column)
        let d = infinite!.inputWidth
        let columnData = plan.symmetric ? rowData : self.columnData!
        let result = rowData.withUnsafeBufferPointer { x in
            columnData.withUnsafeBufferPointer { y in
                // A diagonal tile of a symmetric kernel is read by its upper triangle only.
                infinite!.evaluate(x: UnsafeBufferPointer(rebasing: x[(rows.lowerBound * d)..<(rows.upperBound * d)]), m: rows.count,
                                   y: UnsafeBufferPointer(rebasing: y[(columns.lowerBound * d)..<(columns.upperBound * d)]), n: columns.count,
                                   upper: plan.symmetric && tile.row == tile.column)
            }
        }
        let base = kind == .nngp ? result.nngp : result.ntk
        let k = outputCount
        switch outputKernel {
        case .mean: return base
        case .sum: return base.map { $0 * Double(k) }
        case .full:
            let m = rows.count, n = columns.count
            var full = [Double](repeating: 0, count: m * k * n * k)
            for i in 0..<m { for j in 0..<n { for a in 0..<k { full[(i * k + a) * (n * k) + j * k + a] = base[i * n + j] } } }
            return full
        }
    }

    /// The values of one tile, row-major: (rows·k', columns·k') with k' = k for the full
    /// kernel (row i·k + a, column j·k + b) and 1 otherwise.
    func compute(_ tile: TilePlan.Tile) -> [Double] {
        if kind != .empirical { return computeInfinite(tile) }
        let network = self.network!
        let rowsEntry = entry(Key(columnSet: false, block: tile.row))
        let columnsEntry = entry(Key(columnSet: plan.symmetric ? false : true, block: tile.column))
        let start = Clock.now
        defer { productSeconds += Clock.seconds(since: start) }
        let a = rowsEntry.factors, b = columnsEntry.factors
        let k = network.outputCount
        let kk = outputKernel == .full ? k : 1
        let m = a.count, n = b.count
        var tileValues: [Double]
        // A diagonal tile of a symmetric kernel is read by its upper triangle only (the
        // writers and the gather mirror it): the products skip the blocks below it, which
        // stay zero.
        let diagonal = plan.symmetric && tile.row == tile.column
        let upperSamples = diagonal ? 1 : 0, upperEntries = diagonal ? kk : 0
        switch method {
        case .explicit:
            tileValues = [Double](repeating: 0, count: m * kk * n * kk)
            let p = network.parameterCount
            rowsEntry.gradients!.withUnsafeBufferPointer { ga in
                columnsEntry.gradients!.withUnsafeBufferPointer { gb in
                    tileValues.withUnsafeMutableBufferPointer { c in
                        if kk == 1 {
                            InnerProducts.multiplyTransposed(m: m, n: n, k: k * p, a: ga.baseAddress!, lda: k * p,
                                                             b: gb.baseAddress!, ldb: k * p, c: c.baseAddress!, ldc: n,
                                                             upperFrom: upperSamples)
                        } else {
                            InnerProducts.multiplyTransposed(m: m * k, n: n * k, k: p, a: ga.baseAddress!, lda: p,
                                                             b: gb.baseAddress!, ldb: p, c: c.baseAddress!, ldc: n * k,
                                                             upperFrom: upperEntries)
                        }
                    }
                }
            }
        case .structured:
            let single = precision == .f32 ? (rows: rowsEntry.single!, columns: columnsEntry.single!) : nil
            tileValues = network.structuredTile(rows: a, columns: b, fullOutputs: kk > 1, diagonal: diagonal, single: single)
        }
        if outputKernel == .mean && k > 1 {
            let kd = Double(k)
            for e in 0..<tileValues.count { tileValues[e] /= kd }
        }
        return tileValues
    }

    /// Bytes of structured per-sample quantities per sample: 8 (Σ_l n_in + k n_out + k).
    var factorBytesPerSample: Int {
        guard let network else { return 0 }
        return 8 * network.factorCount(samples: 1)
    }

    /// Computes every block's per-sample quantities once across the ranks instead of
    /// once per rank, into memory that the ranks of a node share: each block is computed
    /// by one rank straight into its node's copy, and sent to the other nodes' copies by
    /// one broadcast among one rank per node. The ranks of a node then read the same
    /// memory, without copies, until `release`. When some node's /dev/shm lacks room, every
    /// rank keeps a private copy instead, filled by broadcasts from the computing ranks.
    /// Collective. Only for the structured method, and only when all blocks fit in the
    /// cache bound (the caller checks).
    func preload(world: Communicator) throws {
        guard let network, method == .structured else { return }
        var blocks: [Key] = (0..<plan.rowBlocks).map { Key(columnSet: false, block: $0) }
        if !plan.symmetric { blocks += (0..<plan.columnBlocks).map { Key(columnSet: true, block: $0) } }
        func samples(_ key: Key) -> Range<Int> { key.columnSet ? plan.columnRange(key.block) : plan.rowRange(key.block) }
        var offsets = [0]
        for key in blocks {
            offsets.append(offsets.last! + network.factorCount(samples: samples(key).count))
        }

        // The node's ranks, and for each index q within a node, one rank per node.
        let node = try world.splitShared()
        let across = try world.split(color: node.rank, key: world.rank)
        let bytes = 8 * offsets.last!
        // Shared memory when a node runs several ranks and its /dev/shm (where Open MPI
        // keeps shared windows; a container's may be small) has room, on every node;
        // otherwise every rank keeps a private copy.
        // With float32 products the rounded copy is shared too (half the bytes again).
        let single = precision == .f32
        let room = node.size == 1 || (Self.sharedMemoryRoom() ?? 0) >= bytes + (single ? bytes / 2 : 0) + bytes / 8
        let shareable = room && ProcessInfo.processInfo.environment["NTK_TEST_PRIVATE_FACTORS"] == nil
        let sharedEverywhere = try world.allreduce(Int32(shareable ? 0 : 1), .max) == 0
        let base: UnsafeMutableRawPointer?
        if sharedEverywhere && node.size > 1 {
            let memory = try SharedMemory(node: node, byteCount: bytes)
            shared = (memory, nil, node, across)
            base = memory.base
        } else {
            // Private memory, in huge pages where the system allows (far fewer page faults
            // to fill it and to free it).
            base = try Agreement(world: world).stage { () throws(NTKError) -> UnsafeMutableRawPointer? in
                let region = LargeRegion(byteCount: bytes)
                if region.base == nil && bytes > 0 {
                    throw NTKError(.software, "cannot allocate \(MemoryPlan.format(bytes)) for the per-sample quantities; lower --cache-mb to recompute them by blocks instead")
                }
                shared = (nil, region, node, across)
                return region.base
            }
        }
        let all = UnsafeMutableBufferPointer(start: base?.assumingMemoryBound(to: Double.self), count: offsets.last!)
        func slot(_ b: Int) -> UnsafeMutableBufferPointer<Double> { UnsafeMutableBufferPointer(rebasing: all[offsets[b]..<offsets[b + 1]]) }

        // Who computes block b: with shared memory, the rank of index q on node n (ranks
        // whose index exists on every node), sent to the other nodes among the ranks of
        // index q; with private copies, rank b mod K, sent to all.
        let perNode = Int(try world.allreduce(Int64(node.size), .min))
        let nodes = Int(try world.allreduce(Int64(node.isRoot ? 1 : 0), .sum))
        let start = Clock.now
        // One node: whole blocks round robin, unless that leaves one rank more than 10% above
        // the mean (few blocks, or a short last one: N = 1797 in blocks of 256 gives 1024
        // samples to one rank and 773 to the other); then the last blocks, one per rank, are
        // shared by samples, every rank computing its part straight into the shared memory.
        var splitFrom = blocks.count
        if sharedEverywhere && nodes == 1 && node.size > 1 {
            var load = [Int](repeating: 0, count: node.size)
            for (b, key) in blocks.enumerated() { load[b % node.size] += samples(key).count }
            let mean = Double(load.reduce(0, +)) / Double(node.size)
            if Double(load.max()!) > 1.1 * mean { splitFrom = Swift.max(0, blocks.count - node.size) }
        }
        func computes(_ b: Int) -> Bool {
            b >= splitFrom ? false
                : sharedEverywhere ? (b % perNode, (b / perNode) % nodes) == (node.rank, across.rank) : b % world.size == world.rank
        }
        /// Faults the pages of `part` in with one call rather than one fault per page.
        func populate(_ part: UnsafeMutableBufferPointer<Double>) {
            guard let first = part.baseAddress, part.count > 0 else { return }
            let address = UInt(bitPattern: first), page = UInt(4096)
            let from = address - address % page
            _ = madvise(UnsafeMutableRawPointer(bitPattern: from), Int(address - from) + 8 * part.count, 23 /* MADV_POPULATE_WRITE */)
        }
        if splitFrom < blocks.count {
            for (b, key) in blocks.enumerated() where b >= splitFrom {
                // Each rank faults in its share of the block's pages.
                let block = slot(b)
                let piece = (block.count + node.size - 1) / node.size
                let lower = Swift.min(node.rank * piece, block.count), upper = Swift.min(lower + piece, block.count)
                populate(UnsafeMutableBufferPointer(rebasing: block[lower..<upper]))
                let range = samples(key)
                let share = (range.count + node.size - 1) / node.size
                let mine = Swift.min(node.rank * share, range.count)..<Swift.min((node.rank + 1) * share, range.count)
                guard !mine.isEmpty else { continue }
                let data = key.columnSet ? columnData! : rowData
                let d = network.inputWidth
                network.factors(Array(data[(range.lowerBound * d)..<(range.upperBound * d)]), count: range.count, into: slot(b), samples: mine)
            }
        }
        for (b, key) in blocks.enumerated() where computes(b) {
            populate(slot(b))
            let range = samples(key)
            let data = key.columnSet ? columnData! : rowData
            let d = network.inputWidth
            network.factors(Array(data[(range.lowerBound * d)..<(range.upperBound * d)]), count: range.count, into: slot(b))
        }
        gradientSeconds += Clock.seconds(since: start)
        if !sharedEverywhere {
            for b in blocks.indices { try world.broadcast(slot(b), root: b % world.size) }
        } else if nodes > 1 {
            for b in blocks.indices where b % perNode == node.rank {
                try across.broadcast(slot(b), root: (b / perNode) % nodes)
            }
        }
        try shared?.memory?.synchronize()
        // The float32 copy, when the factors are shared: one copy per node too, each rank of
        // the node rounding an equal share of it (instead of every rank rounding all of it
        // into memory of its own).
        var rounded: UnsafeMutableBufferPointer<Float>? = nil
        if single, shared?.memory != nil, let node = shared?.node {
            let floats = try SharedMemory(node: node, byteCount: 4 * all.count)
            roundedMemory = floats
            let buffer = UnsafeMutableBufferPointer(start: floats.base?.assumingMemoryBound(to: Float.self), count: all.count)
            let share = (all.count + node.size - 1) / node.size
            let lower = Swift.min(node.rank * share, all.count), upper = Swift.min(lower + share, all.count)
            SingleFactors.round(UnsafeBufferPointer(rebasing: all[lower..<upper]), into: UnsafeMutableBufferPointer(rebasing: buffer[lower..<upper]))
            try floats.synchronize()
            rounded = buffer
        }
        for (b, key) in blocks.enumerated() {
            let factors = network.factors(count: samples(key).count, storage: FactorStorage(borrowing: UnsafeBufferPointer(slot(b))))
            let copy = rounded.map { SingleFactors(factors, borrowing: UnsafeBufferPointer(rebasing: $0[offsets[b]..<offsets[b + 1]])) }
            let made = Entry(factors: factors, gradients: nil, lastUse: 0, single: single, rounded: copy)
            cache[key] = made
            cachedBytes += made.bytes
        }
    }

    /// Bytes free in /dev/shm, where Open MPI keeps shared-memory windows; nil without it.
    static func sharedMemoryRoom() -> Int? {
        var status = statvfs()
        guard statvfs("/dev/shm", &status) == 0 else { return nil }
        return Int(status.f_bavail) * Int(status.f_frsize)
    }

    /// The memory of `preload` (shared by the node's ranks, or private to this rank), and
    /// the communicators it was made with.
    private var shared: (memory: SharedMemory?, region: LargeRegion?, node: Communicator, across: Communicator)? = nil
    /// The node's shared float32 copy of that memory (`Precision.f32`).
    private var roundedMemory: SharedMemory? = nil

    /// Drops the cached per-sample quantities and frees the memory `preload` shares.
    /// Collective when `preload` ran (every rank calls it, after its last tile).
    func release() throws {
        cache.removeAll()
        cachedBytes = 0
        guard let shared else { return }
        self.shared = nil
        if let roundedMemory {
            self.roundedMemory = nil
            try roundedMemory.free()
        }
        try shared.memory?.free()
        shared.region?.free()
        shared.across.free()
        shared.node.free()
    }

    /// f(X) (or f(X2) for `columnSet`) from the cached per-sample quantities, row-major
    /// (samples, k), when every block of that set is cached (after `preload`).
    func cachedOutputs(columnSet: Bool) -> [Double]? {
        guard let network else { return nil }
        let count = columnSet ? plan.columnBlocks : plan.rowBlocks
        var result: [Double] = []
        for block in 0..<count {
            guard let entry = cache[Key(columnSet: columnSet && !plan.symmetric, block: block)] else { return nil }
            result += entry.factors.outputs
        }
        return result.count == (columnSet ? plan.columns : plan.rows) * network.outputCount ? result : nil
    }

    private func entry(_ key: Key) -> Entry {
        clock += 1
        if let hit = cache[key] {
            hit.lastUse = clock
            return hit
        }
        let start = Clock.now
        let range = key.columnSet ? plan.columnRange(key.block) : plan.rowRange(key.block)
        let data = key.columnSet ? columnData! : rowData
        let network = self.network!
        let d = network.inputWidth
        let x = Array(data[(range.lowerBound * d)..<(range.upperBound * d)])
        let factors = network.factors(x, count: range.count)
        let gradients = method == .explicit ? network.gradients(from: factors) : nil
        let made = Entry(factors: factors, gradients: gradients, lastUse: clock, single: precision == .f32 && method == .structured)
        gradientSeconds += Clock.seconds(since: start)
        // Evict least recently used entries, but always keep room for the current pair.
        while cachedBytes + made.bytes > cacheBytes && cache.count > 1 {
            let oldest = cache.min { $0.value.lastUse < $1.value.lastUse }!
            cachedBytes -= oldest.value.bytes
            cache.removeValue(forKey: oldest.key)
        }
        cache[key] = made
        cachedBytes += made.bytes
        return made
    }
}

/// Monotonic wall-clock timing.
enum Clock {
    static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func seconds(since start: UInt64) -> Double { Double(now - start) / 1e9 }
}

import Dispatch

/// A private allocation aligned to 2 MiB and marked for transparent huge pages.
final class LargeRegion {
    let base: UnsafeMutableRawPointer?
    init(byteCount: Int) {
        var pointer: UnsafeMutableRawPointer? = nil
        if byteCount > 0 && posix_memalign(&pointer, 2 << 20, byteCount) == 0, let pointer {
            _ = madvise(pointer, byteCount, 14 /* MADV_HUGEPAGE */)
            base = pointer
        } else {
            base = nil
        }
    }
    /// Releases the memory; call once.
    func free() { Glibc.free(base) }
}
