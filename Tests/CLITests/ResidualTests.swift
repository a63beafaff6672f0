import Foundation
import Testing
import NumPyIO

/// Residual networks through the command line, under real mpirun: the same kernel whatever
/// the rank count and tile size, agreement with the neural-tangents fixture, the analytic
/// kernel refused where neural-tangents has none, and every command accepting them.
@Suite(.serialized) struct ResidualTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/residual").path

    @Test("a nested residual network (k = 3): 1-4 ranks and tiles 3 and 7 give bitwise one kernel (mean and full), equal to neural-tangents' to 1e-10",
          arguments: ["mean", "full"])
    func ranksAndTiles(mode: String) throws {
        let fixture = Self.fixtures + "/empirical/nested_k3"
        let dir = Launcher.temporaryDirectory("res")
        var kernels: [Data] = []
        for (ranks, tile) in [(1, 3), (2, 7), (3, 3), (4, 7)] {
            let out = dir + "/r\(ranks)-t\(tile)"
            let result = try Launcher.run(["gram", "--data", fixture + "/x1.npy", "--model", fixture + "/model.json",
                                           "--params", fixture + "/params.npz", "--tile", String(tile), "--output-kernel", mode,
                                           "--eigen", "none", "--out", out], ranks: ranks, timeout: 60)
            try #require(result.status == 0, "\(result.stderr)")
            kernels.append(try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")))
        }
        #expect(Set(kernels).count == 1, "the kernel depends on the rank count or tile size")
        let ours = try NPYFormat.decode(kernels[0]).doubles()
        let reference = try Launcher.loadDoubles(fixture + "/ntk_\(mode)_11.npy")
        #expect(Launcher.relative(ours, reference) <= 1e-10)
    }

    @Test("--kernel analytic of a sum whose skip follows an activation is refused with 65 before any work, naming the layer; the empirical kernel of it runs",
          arguments: [1, 3])
    func analyticRefused(ranks: Int) throws {
        let model = Self.fixtures + "/analytic/post_activation_sum/model.json"
        let dir = Launcher.temporaryDirectory("resref")
        try Launcher.writeNPY(dir + "/x.npy", shape: [9, 4], values: Launcher.values(36, seed: 2))
        let refused = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", model, "--kernel", "analytic", "--out", dir + "/a"],
                                       ranks: ranks, timeout: 30)
        #expect(refused.status == 65, "\(refused.stderr)")
        #expect(refused.stderr.contains("layer 2") && refused.stderr.contains("not Gaussian"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/a/kernel.npy"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/a/checkpoint"))
        let empirical = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", model, "--out", dir + "/b"], ranks: ranks, timeout: 60)
        #expect(empirical.status == 0, "\(empirical.stderr)")
    }

    @Test("ntk init names a residual network's parameters depth-first and gram reads them back; predict, train and converge accept the network")
    func everyCommand() throws {
        let dir = Launcher.temporaryDirectory("rescmd")
        let model = #"{"layers": [{"type": "dense", "width": 8, "W_std": 1.4142135623730951, "b_std": 0.1}, {"type": "residual", "layers": [{"type": "relu"}, {"type": "dense", "width": 8, "W_std": 1.4142135623730951}, {"type": "residual", "layers": [{"type": "erf"}, {"type": "dense", "width": 8, "b_std": 0.2}]}]}, {"type": "relu"}, {"type": "dense", "width": 2, "b_std": 0.1}]}"#
        try Data(model.utf8).write(to: URL(fileURLWithPath: dir + "/model.json"))
        try Launcher.writeNPY(dir + "/x.npy", shape: [12, 3], values: Launcher.values(36, seed: 4))
        try Launcher.writeNPY(dir + "/y.npy", shape: [12, 2], values: Launcher.values(24, seed: 5))
        let initialized = try Launcher.run(["init", "--model", dir + "/model.json", "--input-width", "3", "--seed", "3", "--out", dir + "/p.npz"])
        try #require(initialized.status == 0, "\(initialized.stderr)")
        let arrays = try NPZFormat.decode(Data(contentsOf: URL(fileURLWithPath: dir + "/p.npz")))
        #expect(arrays.keys.sorted() == ["W0", "W1", "W2", "W3", "b0", "b2", "b3"])
        #expect(arrays["W0"]?.shape == [3, 8] && arrays["W1"]?.shape == [8, 8] && arrays["W2"]?.shape == [8, 8] && arrays["W3"]?.shape == [8, 2])
        let fromFile = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--params", dir + "/p.npz",
                                         "--out", dir + "/g1"], ranks: 2, timeout: 60)
        let fromSeed = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "3",
                                         "--out", dir + "/g2"], ranks: 2, timeout: 60)
        try #require(fromFile.status == 0 && fromSeed.status == 0, "\(fromFile.stderr)\(fromSeed.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/g1/kernel.npy")) == Data(contentsOf: URL(fileURLWithPath: dir + "/g2/kernel.npy")))

        let predict = try Launcher.run(["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--model", dir + "/model.json",
                                        "--learning-rate", "1", "--times", "1,inf", "--out", dir + "/p"], ranks: 2, timeout: 60)
        #expect(predict.status == 0, "\(predict.stderr)")
        let train = try Launcher.run(["train", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--model", dir + "/model.json",
                                      "--learning-rate", "0.5", "--steps", "0,5", "--out", dir + "/t"], ranks: 2, timeout: 60)
        #expect(train.status == 0, "\(train.stderr)")
        let converge = try Launcher.run(["converge", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--widths", "8,32",
                                         "--seeds", "0", "--out", dir + "/c"], ranks: 2, timeout: 60)
        #expect(converge.status == 0, "\(converge.stderr)")
    }
}

/// `predict`, `train` and `converge` on the shared tile engine: checkpoints, stop requests,
/// resume, memory plan.
@Suite(.serialized) struct EngineForEveryCommandTests {
    static func inputs() throws -> String {
        let dir = Launcher.temporaryDirectory("engine")
        try Launcher.writeNPY(dir + "/x.npy", shape: [48, 5], values: Launcher.values(240, seed: 7))
        try Launcher.writeNPY(dir + "/y.npy", shape: [48, 1], values: Launcher.values(48, seed: 8))
        try Launcher.writeNPY(dir + "/xt.npy", shape: [20, 5], values: Launcher.values(100, seed: 9))
        return dir
    }

    static let predict = ["--depth", "2", "--width", "16", "--tile", "4", "--seed", "1", "--learning-rate", "1", "--times", "1,inf"]

    /// With `--solver cg` the predictions come from sums over the ranks, so the reference is
    /// an uninterrupted run at the resumed run's rank count (the tiles are bitwise the same
    /// at any rank count); the eigen path gathers the kernel, so any rank count will do.
    @Test("predict stopped by SIGUSR1 exits 75 with its tiles saved; --resume on another rank count reuses them and writes bitwise the uninterrupted predictions (eigen and cg solvers)",
          arguments: ["eigen", "cg"])
    func predictResumes(solver: String) throws {
        let dir = try Self.inputs()
        let common = ["predict", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--test", dir + "/xt.npy", "--solver", solver] + Self.predict
        let reference = try Launcher.run(common + ["--out", dir + "/reference"], ranks: solver == "cg" ? 3 : 1, timeout: 60)
        try #require(reference.status == 0, "\(reference.stderr)")
        let out = dir + "/run"
        let job = try ReliabilityTests.startSlow(common + ["--out", out], ranks: 2)
        let start = Date()
        while Date().timeIntervalSince(start) < 30 {
            if CheckpointLogs.count(out + "/checkpoint/train") >= 6 { break }
            usleep(50_000)
        }
        kill(job.processIdentifier, SIGUSR1)
        #expect(ReliabilityTests.wait(job, seconds: 20) == 75)
        #expect(!FileManager.default.fileExists(atPath: out + "/summary.json"))
        let resumed = try Launcher.run(common + ["--out", out, "--resume"], ranks: 3, timeout: 60)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        for file in ["train_predictions.npy", "test_predictions.npy"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/" + file)) == Data(contentsOf: URL(fileURLWithPath: dir + "/reference/" + file)), "\(file)")
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/checkpoint"), "the checkpoints are removed after success")
    }

    @Test("predict, train and converge refuse with 64 before any work a run over --memory-budget-mb, and share the engine flags", arguments: ["predict", "train", "converge"])
    func memoryPlan(command: String) throws {
        let dir = try Self.inputs()
        try Launcher.writeNPY(dir + "/big.npy", shape: [6000, 2], values: Launcher.values(12000, seed: 1))
        try Launcher.writeNPY(dir + "/bigy.npy", shape: [6000, 1], values: Launcher.values(6000, seed: 2))
        var arguments = [command, "--depth", "1", "--width", "8", "--out", dir + "/out", "--memory-budget-mb", "100", "--cache-mb", "64"]
        arguments += command == "converge" ? ["--data", dir + "/big.npy", "--widths", "8"]
                                           : ["--train", dir + "/big.npy", "--targets", dir + "/bigy.npy", "--learning-rate", "1"]
        let result = try Launcher.run(arguments, ranks: 2, timeout: 60)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("this run needs about"), "\(result.stderr)")
        #expect(result.seconds < 20)
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/checkpoint"))
    }

    @Test("train reports train and test accuracy for integer labels, for the network and its NTK prediction, as predict does")
    func trainAccuracy() throws {
        let dir = try Self.inputs()
        let labels = (0..<48).map { Int64($0 % 3) }, testLabels = (0..<20).map { Int64($0 % 3) }
        try NPYFormat.encode(NPYArray(shape: [48], int64s: labels)).write(to: URL(fileURLWithPath: dir + "/labels.npy"))
        try NPYFormat.encode(NPYArray(shape: [20], int64s: testLabels)).write(to: URL(fileURLWithPath: dir + "/test-labels.npy"))
        let result = try Launcher.run(["train", "--train", dir + "/x.npy", "--targets", dir + "/labels.npy", "--test", dir + "/xt.npy",
                                       "--test-targets", dir + "/test-labels.npy", "--depth", "1", "--width", "32", "--out-dim", "3",
                                       "--learning-rate", "1", "--steps", "0,20", "--out", dir + "/t"], ranks: 2, timeout: 60)
        try #require(result.status == 0, "\(result.stderr)")
        let training = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/t/training.json"))) as! [String: Any]
        let records = training["records"] as! [[String: Any]]
        #expect(records.count == 2)
        for record in records {
            for key in ["train_accuracy", "ntk_train_accuracy", "test_accuracy", "ntk_test_accuracy"] {
                let value = record[key] as? Double
                #expect(value != nil && value! >= 0 && value! <= 1, "\(key) in \(record)")
            }
        }
    }
}
