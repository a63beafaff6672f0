import ArgumentParser
import GramEngine
import Network

/// The engine's flags, shared by every command that computes kernels (gram, predict,
/// train, converge): tiles, method and precision, the per-sample cache, checkpoints and
/// the memory budget. Read once into `EngineOptions`, which is passed down unchanged.
struct EngineFlags: ParsableArguments {
    @Option(help: "Samples per tile side (default: \(EngineOptions.defaultTileSize), smaller for small data sets so that every rank gets several tiles).")
    var tile: Int?

    @Option(help: "structured (per-layer factors, the fast path) or explicit (full per-sample gradient vectors).")
    var method: GradientMethod = .structured

    @Option(name: .customLong("layer-forms"), help: "How conv layers keep per-sample factors: auto (per layer, the form with fewer multiply-adds per sample pair), structured (patches and signals: least memory) or explicit (weight gradients).")
    var layerForms: FactorForms = .auto

    @Option(help: "f64 or f32: float32 tile products with float64 chunk sums (structured method; about 1e-6 relative).")
    var precision: Precision = .f64

    @Option(name: .customLong("cache-mb"), help: "Bound, in MiB, on the per-sample quantities: when all of them fit, they are computed once and shared by the ranks of each node; otherwise each rank caches up to this much (default: all of them when they take at most 40% of the available memory, else 2048).")
    var cacheMegabytes: Int?

    @Option(help: "Where finished tiles are saved as they complete (default: DIR/checkpoint inside --out; removed after success). A new, empty, or ntk checkpoint directory.")
    var checkpoint: String?

    @Flag(name: .customLong("no-checkpoint"), help: "Do not save finished tiles (a stopped job then starts over).")
    var noCheckpoint = false

    @Flag(help: "Reuse the verified tiles of an interrupted run of the same command (any rank count).")
    var resume = false

    @Option(name: .customLong("memory-budget-mb"), help: "Memory rank 0's node may use, in MiB (default: what the system reports available). The job is refused before any work if its plan needs more.")
    var memoryBudget: Int?

    func validate() throws {
        try Limits.check(tile, "--tile", 1...Limits.maximumTile)
        try Limits.check(memoryBudget, "--memory-budget-mb", 1...Limits.maximumMebibytes)
        try Limits.check(cacheMegabytes, "--cache-mb", 1...Limits.maximumMebibytes)
        if noCheckpoint && (resume || checkpoint != nil) {
            throw ValidationError("--no-checkpoint excludes --resume and --checkpoint")
        }
    }

    /// The options, with the progress setting of the output flags.
    func options(progress: Bool?) -> EngineOptions {
        var options = EngineOptions()
        options.tileSize = tile ?? EngineOptions.defaultTileSize
        options.automaticTile = tile == nil
        options.method = method
        options.layerForms = layerForms
        options.precision = precision
        options.cacheMegabytes = cacheMegabytes ?? 2048
        options.automaticCache = cacheMegabytes == nil
        options.checkpointing = !noCheckpoint
        options.checkpointDirectory = checkpoint
        options.resume = resume
        options.memoryBudget = memoryBudget.map { $0 << 20 }
        options.progress = progress
        return options
    }
}
