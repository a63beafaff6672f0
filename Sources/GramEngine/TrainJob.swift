import CSystem
import Foundation
import LearningDynamics
import LinearAlgebra
import MPI
import Network
import NumPyIO

/// Everything `ntk train` needs to know.
public struct TrainOptions: Sendable {
    public var train: String
    public var targets: String
    public var test: String?
    public var testTargets: String?
    public var model: ModelSource
    public var parameters: ParameterSource
    public var learningRate: Double = 1
    /// Step counts at which outputs are recorded; training runs to the largest.
    public var steps: [Int] = [0, 10, 100, 1000]
    public var output: String
    public var force = false
    public var quiet = false
    /// Tiles, per-sample cache, checkpoints, memory budget, progress of the kernels.
    public var engine = EngineOptions()

    public init(train: String, targets: String, model: ModelSource, parameters: ParameterSource, output: String) {
        self.train = train
        self.targets = targets
        self.model = model
        self.parameters = parameters
        self.output = output
    }
}

/// One recorded step of `ntk train`.
public struct TrainingRecord: Codable, Sendable {
    public var steps: Int
    /// (1/(2c))‖f(X) − Y‖² of the trained network and of the NTK (linearized) prediction.
    public var trainLoss: Double
    public var ntkTrainLoss: Double
    public var testMSE: Double?
    public var ntkTestMSE: Double?
    /// ‖f_t(X) − f_t^lin(X)‖_F / ‖Y − f_0(X)‖_F: how far the real trajectory left the
    /// NTK prediction, relative to the distance training has to cover.
    public var trajectoryDistance: Double
    /// On the test inputs: ‖f_t(X*) − f_t^lin(X*)‖_F / ‖f_t^lin(X*) − f_0(X*)‖_F (nil at t = 0).
    public var testTrajectoryDistance: Double?
    /// With integer class labels (and k ≥ 2): the fraction of argmax predictions that are
    /// right, for the trained network and its NTK prediction, as `ntk predict` reports.
    public var trainAccuracy: Double?
    public var ntkTrainAccuracy: Double?
    public var testAccuracy: Double?
    public var ntkTestAccuracy: Double?

    enum CodingKeys: String, CodingKey {
        case steps
        case trainAccuracy = "train_accuracy", ntkTrainAccuracy = "ntk_train_accuracy"
        case testAccuracy = "test_accuracy", ntkTestAccuracy = "ntk_test_accuracy"
        case trainLoss = "train_loss", ntkTrainLoss = "ntk_train_loss", testMSE = "test_mse", ntkTestMSE = "ntk_test_mse"
        case trajectoryDistance = "trajectory_distance", testTrajectoryDistance = "test_trajectory_distance"
    }
}

/// The record of `ntk train`, written as training.json.
public struct TrainingSummary: Codable, Sendable {
    public var n: Int
    public var m: Int?
    public var outputs: Int
    public var parameters: Int
    public var learningRate: Double
    public var maxStableLearningRate: Double
    public var records: [TrainingRecord]
    /// ‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F on the training inputs: how much the empirical NTK moved.
    public var kernelChange: Double
    public var ranks: Int
    public var seconds: [String: Double]
    /// The step a `--resume` continued from (nil: trained from step 0).
    public var resumedFromStep: Int?
    /// The result record's marks (see `OutputDirectory`): the tool, and the files it wrote.
    public var tool = "ntk"
    public var files: [String] = []

    enum CodingKeys: String, CodingKey {
        case n, m, outputs, parameters, records, ranks, seconds, tool, files
        case resumedFromStep = "resumed_from_step"
        case learningRate = "learning_rate", maxStableLearningRate = "max_stable_learning_rate", kernelChange = "kernel_change"
    }
}

/// `ntk train`: full-batch gradient descent on the finite network itself, against the
/// NTK's prediction of the same run. Training samples are split over the ranks; every
/// rank holds the parameters, and the gradient is summed with one allreduce per step.
public enum TrainJob {
    public static func run(_ options: TrainOptions, world: Communicator) -> ExitStatus {
        JobRunner.run(world: world) { try execute(options, world: world) }
    }

    static func execute(_ options: TrainOptions, world: Communicator) throws {
        let agreement = Agreement(world: world)
        let start = Clock.now
        // The node's cores shared by its ranks: a lone rank's products use them all.
        let localRanks = (try? world.nodeLocal().size) ?? 1
        BLASLibrary.setThreadCount(Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / Swift.max(1, localRanks)))
        // Every step allocates and frees arrays of megabytes (the layers' activations and
        // signals, the gradient): keep them in the heap instead of a fresh mmap, zeroed page
        // by page, and a munmap at every step (measured, 100 steps of 3 x 1024 on 300
        // digits, 2 ranks: 7.8-8.3 s before, 5.5-6.1 s after).
        ntk_keep_heap(32 << 20, 512 << 20)
        var predictOptions = PredictOptions(train: options.train, targets: options.targets, model: options.model,
                                            parameters: options.parameters, output: options.output)
        predictOptions.test = options.test
        predictOptions.testTargets = options.testTargets
        let loaded = try agreement.stage { () throws(NTKError) -> PredictJob.Loaded in try PredictJob.load(predictOptions) }
        let output: OutputDirectory? = try agreement.stage { () throws(NTKError) -> OutputDirectory? in
            guard world.isRoot else { return nil }
            return try OutputDirectory(path: options.output, force: options.force, markers: ["training.json"],
                                       writes: ["train_outputs.npy", "ntk_train_predictions.npy", "test_outputs.npy",
                                                "ntk_test_predictions.npy", "trained_params.npz", "training.json"])
        }
        var network = loaded.network!
        let initial = network
        let n = loaded.train.count, k = network.outputCount, d = network.inputWidth
        let c = Double(n * k)
        let y = loaded.targets.values

        // The memory plan, before any work: rank 0 holds the kernels and the dynamics.
        let engine = TileEngine(options: options.engine, output: options.output, world: world)
        let dn = Double(n), dm = Double(loaded.test?.count ?? 0)
        try engine.checkMemory(Double(MemoryPlan.baseline) + 8 * (5 * dn * dn + dm * dn) + 8 * 3 * Double(network.parameterCount),
                               what: "Θ_0 and Θ_T of the training set, Θ_0's eigenvectors, Θ_0(X*, X) and the parameters")

        // This rank's slice of the training set.
        let lower = n * world.rank / world.size, upper = n * (world.rank + 1) / world.size
        let sliceX = Array(loaded.train.values[(lower * d)..<(upper * d)])
        let sliceY = Array(y[(lower * k)..<(upper * k)])
        let sliceCount = upper - lower

        // The training checkpoint: with --resume, the saved state (rank 0 reads it, every
        // rank gets the step and the parameters).
        let checkpointRoot = options.engine.checkpointDirectory(output: options.output)
        let checkpoint: TrainingCheckpoint? = options.engine.checkpointing ? TrainingCheckpoint(
            directory: checkpointRoot + "/training",
            manifest: .init(data: Checkpoint.fingerprint(loaded.train.values), targets: Checkpoint.fingerprint(y),
                            test: loaded.test.map { Checkpoint.fingerprint($0.values) }, model: Checkpoint.fingerprint(loaded.spec.encodeJSON()),
                            parameters: Checkpoint.fingerprint(initial.flatParameters), learningRate: options.learningRate,
                            steps: options.steps)) : nil
        var recordedTrain: [Int: [Double]] = [:]
        var recordedTest: [Int: [Double]] = [:]
        // Rank 0 reads the state (every rank agrees on its failure first), then sends the
        // step and the parameters.
        let saved = try agreement.stage { () throws(NTKError) -> TrainingCheckpoint.State? in
            guard world.isRoot, let checkpoint, let saved = try checkpoint.prepare(resume: options.engine.resume) else { return nil }
            guard saved.parameters.count == network.parameterCount, saved.step <= (options.steps.max() ?? 0) else {
                throw NTKError(.dataError, "cannot --resume: \(checkpoint.statePath) does not fit this network or these steps")
            }
            return saved
        }
        var header: [Double] = [Double(saved?.step ?? 0)]
        try world.broadcast(&header, root: 0)
        let resumed = Int(header[0])
        if resumed > 0 {
            var parameters = saved?.parameters ?? [Double](repeating: 0, count: network.parameterCount)
            try world.broadcast(&parameters, root: 0)
            network = network.replacing(flatParameters: parameters)
            recordedTrain = saved?.train ?? [:]
            recordedTest = saved?.test ?? [:]
        }

        // Train, recording full outputs at the requested steps (on rank 0).
        let trainStart = Clock.now
        let recordAt = Set(options.steps)
        let last = options.steps.max() ?? 0
        var diverged: Int? = nil
        // A stop request (SIGUSR1, SIGTERM, SIGINT on any rank) and a failed save (rank 0)
        // ride on each step's reduction, so every rank stops after the same step.
        var stopSignal: Int32? = nil
        var saveFailure: NTKError? = nil
        var lastSave = Clock.now
        func state(at step: Int) -> TrainingCheckpoint.State {
            TrainingCheckpoint.State(step: step, parameters: network.flatParameters,
                                     train: recordedTrain.filter { $0.key <= step }, test: recordedTest.filter { $0.key <= step })
        }
        let steps = StepProgress(enabled: world.isRoot && (options.engine.progress ?? true), explicit: options.engine.progress == true,
                                 total: last, first: resumed)
        let delay = ProcessInfo.processInfo.environment["NTK_STEP_DELAY_MS"].flatMap { UInt32($0) } ?? 0
        let stopCodes = Interruption.signals
        let extra = 2 + stopCodes.count
        for step in resumed...last {
            if delay > 0 { usleep(delay * 1000) }
            // f(X) and the loss's gradient (weights (f − Y)/c) from one forward pass; after the
            // last step only f.
            let f: [Double]
            var gradient: [Double]
            if step < last && sliceCount > 0 {
                (f, gradient) = network.outputsAndWeightedGradient(sliceX, count: sliceCount, extra: extra) { f in
                    (0..<(sliceCount * k)).map { (f[$0] - sliceY[$0]) / c }
                }
            } else {
                f = sliceCount > 0 ? network.outputs(sliceX, count: sliceCount) : []
                gradient = step < last ? [Double](repeating: 0, count: network.parameterCount + extra) : []
            }
            if recordAt.contains(step) {
                // Recorded by the same forward pass as f₀ and the test outputs (the tile
                // kernels; the step's own f went through BLAS), so that step 0 is f₀ exactly.
                let recorded = sliceCount > 0 && step < last ? network.outputs(sliceX, count: sliceCount) : f
                var all = [Double](repeating: 0, count: n * k)
                for i in 0..<(sliceCount * k) { all[lower * k + i] = recorded[i] }
                try world.allreduce(&all, .sum)
                recordedTrain[step] = all
                if world.isRoot, let test = loaded.test { recordedTest[step] = network.outputs(test.values, count: test.count) }
            }
            if step == last { break }
            // The loss and the stop flags ride along with the gradient's reduction (no
            // collective of their own).
            var squares = 0.0
            for i in 0..<(sliceCount * k) { squares += (f[i] - sliceY[i]) * (f[i] - sliceY[i]) }
            // After the P gradient entries: the squared error, the ranks whose save failed,
            // and the ranks that received each stop signal.
            let p = network.parameterCount
            gradient[p] = squares
            gradient[p + 1] = saveFailure != nil ? 1 : 0
            for (i, code) in stopCodes.enumerated() { gradient[p + 2 + i] = Interruption.requested == code ? 1 : 0 }
            try world.allreduce(&gradient, .sum)
            steps.update(step: step, loss: gradient[p] / (2 * c))
            if gradient[p + 1] > 0 { break }
            if !gradient.withUnsafeBufferPointer({ network.descend($0, rate: options.learningRate) }) { diverged = step + 1; break }
            if let i = stopCodes.indices.first(where: { gradient[p + 2 + $0] > 0 }) { stopSignal = stopCodes[i] }
            if world.isRoot, let checkpoint, stopSignal != nil || Clock.seconds(since: lastSave) >= checkpoint.interval {
                do { try checkpoint.save(state(at: step + 1)) } catch { saveFailure = error }
                lastSave = Clock.now
            }
            if let stopSignal {
                let saved = checkpoint == nil || saveFailure != nil ? "nothing was saved (checkpointing is off)"
                    : "the state after \(step + 1) of \(last) steps is saved in \(checkpoint!.directory): rerun the same command with --resume to continue"
                try agreement.stage { () throws(NTKError) in
                    if let saveFailure { throw saveFailure }
                    throw NTKError(.interrupted, "stopped by \(Interruption.name(stopSignal)) after step \(step + 1) of \(last); \(saved)")
                }
            }
        }
        try agreement.stage { () throws(NTKError) in
            if let saveFailure { throw saveFailure }
        }
        try agreement.stage { () throws(NTKError) in
            if let diverged {
                throw NTKError(.dataError, "training diverged at step \(diverged) (non-finite parameters): the learning rate \(options.learningRate) is too large; ntk predict reports the largest stable rate 2c/lambda_max")
            }
        }
        let trainSeconds = Clock.seconds(since: trainStart)

        // Kernels: Θ_0 and Θ_T on the training set, Θ_0(X*, X) for the NTK prediction.
        let kernelStart = Clock.now
        func kernel(_ name: String, _ net: Network, rows: DataSet, columns: DataSet?) throws -> [Double] {
            let plan = TilePlan(rows: rows.count, columns: columns?.count ?? rows.count, tileSize: options.engine.tileSize(rows: rows.count, columns: columns?.count ?? rows.count),
                                symmetric: columns == nil, ranks: world.size)
            let computer = TileComputer(network: net, plan: plan, outputKernel: .mean, method: options.engine.method, forms: options.engine.layerForms,
                                        rowData: rows.values, columnData: columns?.values, cacheBytes: options.engine.cacheMegabytes << 20)
            return try engine.gathered(name, computer: computer, plan: plan,
                                       manifest: engine.manifest(rows: rows, columns: columns, spec: net.spec, network: net, kind: .empirical, plan: plan))
        }
        let theta0 = try kernel("initial", initial, rows: loaded.train, columns: nil)
        let thetaT = try kernel("trained", network, rows: loaded.train, columns: nil)
        let testKernel = try loaded.test.map { try kernel("test", initial, rows: $0, columns: loaded.train) }
        let kernelSeconds = Clock.seconds(since: kernelStart)

        try agreement.stage(quietly: true) { () throws(NTKError) in
            guard world.isRoot, let output else { return }
            let m = loaded.test?.count
            let targets = RowMajorMatrix(rows: n, columns: k, elements: y)
            let f0 = initial.outputs(loaded.train.values, count: n)
            let f0Test = loaded.test.map { initial.outputs($0.values, count: $0.count) }
            let dynamics: GradientDescentMSE
            var linear: [Int: Prediction] = [:]
            do {
                dynamics = try GradientDescentMSE(trainKernel: RowMajorMatrix(rows: n, columns: n, elements: theta0), targets: targets,
                                                  learningRate: options.learningRate)
                let trajectory = try dynamics.trajectory(trainOutputs: RowMajorMatrix(rows: n, columns: k, elements: f0),
                                                         testKernel: testKernel.map { RowMajorMatrix(rows: m!, columns: n, elements: $0) },
                                                         testOutputs: f0Test.map { RowMajorMatrix(rows: m!, columns: k, elements: $0) })
                for s in options.steps { linear[s] = try trajectory.prediction(at: .steps(s)) }
            } catch {
                throw NTKError(.software, "the NTK prediction failed: \(error)")
            }
            var scale = 0.0
            for i in 0..<(n * k) { scale += (y[i] - f0[i]) * (y[i] - f0[i]) }
            scale = scale.squareRoot()
            let testY = loaded.testTargets?.values
            var records: [TrainingRecord] = []
            var realTrain: [Double] = [], realTest: [Double] = [], ntkTrain: [Double] = [], ntkTest: [Double] = []
            for s in options.steps {
                let real = recordedTrain[s]!, lin = linear[s]!
                var loss = 0.0, distance = 0.0
                for i in 0..<(n * k) {
                    loss += (real[i] - y[i]) * (real[i] - y[i])
                    distance += (real[i] - lin.train.elements[i]) * (real[i] - lin.train.elements[i])
                }
                var record = TrainingRecord(steps: s, trainLoss: loss / (2 * c), ntkTrainLoss: lin.trainLoss,
                                            trajectoryDistance: scale > 0 ? distance.squareRoot() / scale : 0)
                if let labels = loaded.targets.labels, k >= 2 {
                    record.trainAccuracy = try? Metrics.accuracy(RowMajorMatrix(rows: n, columns: k, elements: real), labels: labels)
                    record.ntkTrainAccuracy = try? Metrics.accuracy(lin.train, labels: labels)
                }
                realTrain += real
                ntkTrain += lin.train.elements
                if let realT = recordedTest[s], let linT = lin.test {
                    realTest += realT
                    ntkTest += linT.elements
                    var gap = 0.0, size = 0.0
                    for i in 0..<realT.count {
                        gap += (realT[i] - linT.elements[i]) * (realT[i] - linT.elements[i])
                        size += (linT.elements[i] - f0Test![i]) * (linT.elements[i] - f0Test![i])
                    }
                    record.testTrajectoryDistance = size > 0 ? (gap / size).squareRoot() : nil
                    if let testY {
                        var a = 0.0, b = 0.0
                        for i in 0..<realT.count {
                            a += (realT[i] - testY[i]) * (realT[i] - testY[i])
                            b += (linT.elements[i] - testY[i]) * (linT.elements[i] - testY[i])
                        }
                        record.testMSE = a / Double(realT.count)
                        record.ntkTestMSE = b / Double(realT.count)
                    }
                    if let labels = loaded.testTargets?.labels, k >= 2 {
                        record.testAccuracy = try? Metrics.accuracy(RowMajorMatrix(rows: realT.count / k, columns: k, elements: realT), labels: labels)
                        record.ntkTestAccuracy = try? Metrics.accuracy(linT, labels: labels)
                    }
                }
                records.append(record)
            }
            var change = 0.0, norm = 0.0
            for i in 0..<(n * n) {
                change += (thetaT[i] - theta0[i]) * (thetaT[i] - theta0[i])
                norm += theta0[i] * theta0[i]
            }
            var summary = TrainingSummary(n: n, m: m, outputs: k, parameters: network.parameterCount, learningRate: options.learningRate,
                                          maxStableLearningRate: dynamics.maxStableLearningRate, records: records,
                                          kernelChange: (change / norm).squareRoot(), ranks: world.size,
                                          seconds: ["training": trainSeconds, "kernels": kernelSeconds, "total": Clock.seconds(since: start)])
            summary.resumedFromStep = resumed > 0 ? resumed : nil
            let t = options.steps.count
            try output.stage("train_outputs.npy", NPYFormat.encode(NPYArray(shape: [t, n, k], doubles: realTrain)))
            try output.stage("ntk_train_predictions.npy", NPYFormat.encode(NPYArray(shape: [t, n, k], doubles: ntkTrain)))
            if let m {
                try output.stage("test_outputs.npy", NPYFormat.encode(NPYArray(shape: [t, m, k], doubles: realTest)))
                try output.stage("ntk_test_predictions.npy", NPYFormat.encode(NPYArray(shape: [t, m, k], doubles: ntkTest)))
            }
            let arrays = network.namedArrays.map { (name: $0.name, array: NPYArray(shape: $0.shape, doubles: $0.values)) }
            do { try output.stage("trained_params.npz", try NPZFormat.encode(arrays)) } catch let error as NTKError { throw error } catch {
                throw NTKError(.software, "cannot encode the trained parameters: \(error)")
            }
            summary.files = output.stagedNames + ["training.json"]
            try output.stage("training.json", try JSONOutput.encode(summary))
            try output.commitStaged()
            engine.finish()
            checkpoint?.remove(parentToo: options.engine.checkpointDirectory == nil)
            if !options.quiet {
                func g(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "-" }
                func pad(_ s: String, _ w: Int) -> String { s.padding(toLength: max(w, s.count), withPad: " ", startingAt: 0) }
                var lines = ["ntk train: \(n) samples, P = \(network.parameterCount), learning rate \(g(options.learningRate)) (stable below \(g(dynamics.maxStableLearningRate))), \(world.size) rank(s)",
                             "  steps    train loss   NTK loss     distance to NTK   test MSE    NTK test MSE"]
                for r in records {
                    lines.append("  " + pad(String(r.steps), 8) + " " + pad(g(r.trainLoss), 12) + " " + pad(g(r.ntkTrainLoss), 12) + " "
                                 + pad(g(r.trajectoryDistance), 17) + " " + pad(g(r.testMSE), 11) + " " + g(r.ntkTestMSE))
                }
                lines.append("  the empirical NTK moved by \(g(summary.kernelChange)) (relative Frobenius) during training")
                lines.append("  wrote train_outputs.npy, ntk_train_predictions.npy\(m != nil ? ", test_outputs.npy, ntk_test_predictions.npy" : ""), trained_params.npz, training.json to \(output.path)")
                print(lines.joined(separator: "\n"))
            }
        }
    }
}

/// Progress of the training loop on stderr from rank 0: steps done, the loss, elapsed time
/// and time left; rewritten in place every second on a terminal, a plain line every 30 s
/// in a log file (nothing for a run shorter than that).
final class StepProgress {
    let enabled: Bool
    let total: Int
    let interactive = isatty(2) != 0
    let start = Clock.now
    private var lastPrint: UInt64
    private let everySecond: Bool

    /// Steps done before this run (a resumed training), not counted in its rate.
    let first: Int

    init(enabled: Bool, explicit: Bool, total: Int, first: Int = 0) {
        self.enabled = enabled
        self.everySecond = explicit
        self.total = total
        self.first = first
        lastPrint = start
    }

    /// After step `step` (0-based) whose loss before the update was `loss`.
    func update(step: Int, loss: Double) {
        guard enabled, total > 0 else { return }
        let now = Clock.now
        let interval: UInt64 = interactive || everySecond ? 1_000_000_000 : Progress.logInterval * 1_000_000_000
        let done = step + 1
        if now - lastPrint < interval && !(interactive && done == total) { return }
        lastPrint = now
        let elapsed = Clock.seconds(since: start)
        let left = elapsed * Double(total - done) / Double(Swift.max(1, done - first))
        let line = String(format: "ntk train: step %d/%d  loss %.6g  elapsed %.1fs  left ~%.1fs", done, total, loss, elapsed, left)
        let text = interactive ? "\r\(line)\u{1B}[K" + (done == total ? "\n" : "") : line + "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}
