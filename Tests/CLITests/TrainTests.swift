import Foundation
import Testing
import NumPyIO

@Suite(.serialized) struct TrainTests {
    static func train(_ dir: String, width: Int, ranks: Int, out: String) throws -> [String: Any] {
        let result = try Launcher.run(["train", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--depth", "2", "--width", String(width),
                                       "--activation", "tanh", "--learning-rate", "2", "--steps", "0,5,50", "--seed", "3", "--out", out, "--tile", "8"],
                                      ranks: ranks, timeout: 120)
        try #require(result.status == 0, "\(result.stderr)")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/training.json"))) as! [String: Any]
    }

    @Test("ntk train: the loss falls, a wider network stays closer to its NTK prediction and its kernel moves less, and 1 and 2 ranks train the same network")
    func lazyRegime() throws {
        let dir = Launcher.temporaryDirectory("train")
        try Launcher.writeNPY(dir + "/x.npy", shape: [16, 3], values: Launcher.values(48, seed: 31))
        try Launcher.writeNPY(dir + "/y.npy", shape: [16], values: Launcher.values(16, seed: 32))
        let narrow = try Self.train(dir, width: 8, ranks: 2, out: dir + "/narrow")
        let wide = try Self.train(dir, width: 512, ranks: 2, out: dir + "/wide")
        let wideOne = try Self.train(dir, width: 512, ranks: 1, out: dir + "/wide1")
        func records(_ s: [String: Any]) -> [[String: Any]] { s["records"] as! [[String: Any]] }
        let w = records(wide), nr = records(narrow)
        #expect(w[0]["trajectory_distance"] as? Double == 0)
        #expect((w[2]["train_loss"] as! Double) < (w[0]["train_loss"] as! Double))
        // Lazy training: the NTK moves ~1/√width; 64x the width gives ~8x less motion (2x is robust).
        #expect((wide["kernel_change"] as! Double) * 2 < (narrow["kernel_change"] as! Double), "\(wide["kernel_change"]!) vs \(narrow["kernel_change"]!)")
        #expect((w[2]["trajectory_distance"] as! Double) < (nr[2]["trajectory_distance"] as! Double))
        // Same network and steps on 1 and 2 ranks: only the order of the gradient sum differs.
        let a = try Launcher.readNPY(dir + "/wide/train_outputs.npy").doubles()
        let b = try Launcher.readNPY(dir + "/wide1/train_outputs.npy").doubles()
        let scale = b.map(abs).max()!
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-10 * scale })
        _ = wideOne
        #expect(FileManager.default.fileExists(atPath: dir + "/wide/trained_params.npz"))
    }

    /// Stop and resume of a training: the state saved after every step here
    /// (NTK_TRAIN_CHECKPOINT_SECONDS=0), each step slowed by 40 ms so that SIGUSR1 comes
    /// mid-run. Training at a fixed rank count is deterministic, so the resumed run's files
    /// must equal the uninterrupted run's byte for byte.
    @Test("ntk train: SIGUSR1 saves the training state and exits 75; --resume refuses another learning rate (65) and continues to files bitwise equal to an uninterrupted run")
    func stopAndResume() throws {
        let dir = Launcher.temporaryDirectory("train-resume")
        try Launcher.writeNPY(dir + "/x.npy", shape: [16, 3], values: Launcher.values(48, seed: 31))
        try Launcher.writeNPY(dir + "/y.npy", shape: [16], values: Launcher.values(16, seed: 32))
        func arguments(_ out: String, rate: String = "2") -> [String] {
            ["train", "--train", dir + "/x.npy", "--targets", dir + "/y.npy", "--depth", "2", "--width", "64", "--activation", "tanh",
             "--learning-rate", rate, "--steps", "0,5,60,120", "--seed", "3", "--tile", "8", "--out", out]
        }
        let reference = try Launcher.run(arguments(dir + "/reference"), ranks: 2, timeout: 120)
        try #require(reference.status == 0, "\(reference.stderr)")
        let out = dir + "/run", state = out + "/checkpoint/training/state.npz"
        let job = try ReliabilityTests.startSlow(arguments(out), ranks: 2, delayMs: 0,
                                                 environment: ["NTK_STEP_DELAY_MS": "40", "NTK_TRAIN_CHECKPOINT_SECONDS": "0"])
        let start = Date()
        while !FileManager.default.fileExists(atPath: state) && Date().timeIntervalSince(start) < 30 { usleep(20_000) }
        usleep(300_000)
        kill(job.processIdentifier, SIGUSR1)
        #expect(ReliabilityTests.wait(job, seconds: 30) == 75)
        #expect(!FileManager.default.fileExists(atPath: out + "/training.json"))
        #expect(FileManager.default.fileExists(atPath: state))
        let other = try Launcher.run(arguments(out, rate: "3") + ["--resume"], ranks: 2, timeout: 60)
        #expect(other.status == 65 && other.stderr.contains("--learning-rate"), "\(other.status) \(other.stderr)")
        let resumed = try Launcher.run(arguments(out) + ["--resume"], ranks: 2, timeout: 120)
        try #require(resumed.status == 0, "\(resumed.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/training.json"))) as! [String: Any]
        let from = try #require(summary["resumed_from_step"] as? Int)
        #expect(from > 0 && from < 120, "\(from)")
        for name in ["train_outputs.npy", "ntk_train_predictions.npy", "trained_params.npz"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/" + name)) == Data(contentsOf: URL(fileURLWithPath: dir + "/reference/" + name)), "\(name)")
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/checkpoint"), "the checkpoint is removed after success")
    }
}
