import Foundation
import Testing
import NumPyIO

/// Convolutional networks through the command line, under real mpirun: one kernel whatever
/// the rank count, tile size and layer form; shaped and flat data; every command; and the
/// models and data that must be refused before any work.
@Suite(.serialized) struct ConvTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/conv").path

    @Test("a strided CIRCULAR/SAME CNN with global pooling (k = 3): 1-4 ranks, tiles 2 and 3 give bitwise one kernel, equal to neural-tangents' to 1e-10, in every layer form",
          arguments: ["mean", "full"])
    func ranksAndTiles(mode: String) throws {
        let fixture = Self.fixtures + "/empirical/conv2d_same_stride2_circular_gap_standard"
        let dir = Launcher.temporaryDirectory("conv")
        let reference = try Launcher.loadDoubles(fixture + "/ntk_\(mode)_11.npy")
        for forms in ["auto", "structured", "explicit"] {
            var kernels: [Data] = []
            for (ranks, tile) in [(1, 2), (2, 3), (3, 2), (4, 3)] {
                let out = dir + "/\(forms)-r\(ranks)-t\(tile)"
                let result = try Launcher.run(["gram", "--data", fixture + "/x1.npy", "--model", fixture + "/model.json",
                                               "--params", fixture + "/params.npz", "--tile", String(tile), "--output-kernel", mode,
                                               "--layer-forms", forms, "--eigen", "none", "--out", out], ranks: ranks, timeout: 60)
                try #require(result.status == 0, "\(result.stderr)")
                kernels.append(try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")))
            }
            #expect(Set(kernels).count == 1, "\(forms): the kernel depends on the rank count or tile size")
            // kernel.npy holds the full kernel as (N, N, k, k), as neural-tangents does.
            let ours = try NPYFormat.decode(kernels[0]).doubles()
            #expect(Launcher.relative(ours, reference) <= 1e-10, "\(forms)")
        }
    }

    @Test("--kernel analytic and nngp of a Myrtle-like CNN: 1-3 ranks and odd tiles give bitwise one kernel, equal to neural-tangents' kernel_fn (1e-12 off the diagonal)",
          arguments: ["analytic", "nngp"])
    func infiniteWidth(kind: String) throws {
        let fixture = Self.fixtures + "/analytic/myrtle_small_gap"
        let dir = Launcher.temporaryDirectory("convinf")
        var kernels: [Data] = []
        for (ranks, tile) in [(1, 64), (2, 3), (3, 2)] {
            let out = dir + "/r\(ranks)-t\(tile)"
            let result = try Launcher.run(["gram", "--data", fixture + "/x1.npy", "--model", fixture + "/model.json", "--kernel", kind,
                                           "--tile", String(tile), "--eigen", "none", "--out", out], ranks: ranks, timeout: 60)
            try #require(result.status == 0, "\(result.stderr)")
            kernels.append(try Data(contentsOf: URL(fileURLWithPath: out + "/kernel.npy")))
        }
        #expect(Set(kernels).count == 1, "the kernel depends on the rank count or tile size")
        let ours = try NPYFormat.decode(kernels[0]).doubles()
        let reference = try Launcher.loadDoubles(fixture + "/\(kind == "analytic" ? "ntk" : "nngp")_11.npy")
        let n = Int(Double(reference.count).squareRoot())
        let scale = reference.map(abs).max()!
        for i in 0..<n { for j in 0..<n where i != j { #expect(abs(ours[i * n + j] - reference[i * n + j]) <= 1e-12 * scale) } }
        #expect(Launcher.relative(ours, reference) <= 1e-7)
    }

    @Test("flat rows with the model's input_shape and the same data shaped (N, H, W, C) give the same kernel; --data2 must have the same sample shape")
    func shapedAndFlatData() throws {
        let fixture = Self.fixtures + "/empirical/flat_input_shape_standard"
        let dir = Launcher.temporaryDirectory("convshape")
        let flat = try Launcher.readNPY(fixture + "/x1.npy")
        let n = flat.shape[0]
        try Launcher.writeNPY(dir + "/shaped.npy", shape: [n, 4, 4, 1], values: flat.doubles())
        let a = try Launcher.run(["gram", "--data", fixture + "/x1.npy", "--model", fixture + "/model.json", "--params", fixture + "/params.npz",
                                  "--eigen", "none", "--out", dir + "/a"], ranks: 2, timeout: 60)
        let b = try Launcher.run(["gram", "--data", dir + "/shaped.npy", "--model", fixture + "/model.json", "--params", fixture + "/params.npz",
                                  "--eigen", "none", "--out", dir + "/b"], ranks: 2, timeout: 60)
        try #require(a.status == 0 && b.status == 0, "\(a.stderr)\(b.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/a/kernel.npy")) == Data(contentsOf: URL(fileURLWithPath: dir + "/b/kernel.npy")))
        #expect(Launcher.relative(try Launcher.loadDoubles(dir + "/a/kernel.npy"), try Launcher.loadDoubles(fixture + "/ntk_mean_11.npy")) <= 1e-10)
        // A cross kernel against data of another sample shape is refused.
        try Launcher.writeNPY(dir + "/other.npy", shape: [n, 2, 8, 1], values: flat.doubles())
        let cross = try Launcher.run(["gram", "--data", dir + "/shaped.npy", "--data2", dir + "/other.npy", "--model", fixture + "/model.json",
                                      "--params", fixture + "/params.npz", "--out", dir + "/c"], ranks: 2, timeout: 60)
        #expect(cross.status == 65, "\(cross.stderr)")
        #expect(cross.stderr.contains("--data2") && cross.stderr.contains("(2, 8, 1)"), "\(cross.stderr)")
    }

    static let badModels: [(name: String, model: String, shape: [Int], message: String)] = [
        ("kernel larger than the input", #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [5, 5]}, {"type": "flatten"}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "layer 0: the conv window (5, 5) is larger than its input (4, 4)"),
        ("pooling leaves no position", #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [3, 3]}, {"type": "avg_pool", "window": [3, 3]}, {"type": "flatten"}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "layer 1: the avg_pool window (3, 3) is larger than its input (2, 2)"),
        ("data not matching input_shape", #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [3, 3]}, {"type": "flatten"}, {"type": "dense", "width": 1}]}"#,
         [6, 15], "input_shape is (4, 4, 1)"),
        ("conv after flatten", #"{"input_shape": [4, 4, 1], "layers": [{"type": "flatten"}, {"type": "conv", "channels": 2, "kernel": [3]}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "layer 1: conv needs spatial input"),
        ("spatial layer on flat data", #"{"layers": [{"type": "avg_pool", "window": [2]}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "layer 0: avg_pool needs spatial input"),
        ("2-D kernel on 1-D data", #"{"input_shape": [16, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [3, 3]}, {"type": "flatten"}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "layer 0: conv has a 2-D window but its input (16, 1) has 1 spatial axes"),
        ("spatial output", #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [3, 3]}]}"#,
         [6, 16], "output has shape (2, 2, 2); it must be flat"),
        ("unknown key", #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [3, 3], "stride": [2, 2]}, {"type": "flatten"}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "layer 0: unknown key \"stride\" for a conv layer"),
        ("bad padding", #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 2, "kernel": [3, 3], "padding": "FULL"}, {"type": "flatten"}, {"type": "dense", "width": 1}]}"#,
         [6, 16], "\"padding\" must be \"VALID\", \"SAME\" or \"CIRCULAR\""),
    ]

    @Test("models and data that do not fit are refused with 65 before any work, naming the layer; nothing is written",
          arguments: badModels.indices)
    func refused(index: Int) throws {
        let bad = Self.badModels[index]
        let dir = Launcher.temporaryDirectory("convbad")
        try Data(bad.model.utf8).write(to: URL(fileURLWithPath: dir + "/model.json"))
        try Launcher.writeNPY(dir + "/x.npy", shape: bad.shape, values: Launcher.values(bad.shape.reduce(1, *), seed: 3))
        for ranks in [1, 3] {
            let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--out", dir + "/out\(ranks)"],
                                          ranks: ranks, timeout: 30)
            #expect(result.status == 65, "\(bad.name): \(result.stderr)")
            #expect(result.stderr.contains(bad.message), "\(bad.name): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out\(ranks)/kernel.npy"), "\(bad.name)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out\(ranks)/checkpoint"), "\(bad.name)")
        }
    }

    @Test("a CNTK whose spatial covariance blocks do not fit is refused with 64 before any work, naming the blocks and what needs less", arguments: [1, 2])
    func spatialBlocksTooLarge(ranks: Int) throws {
        let dir = Launcher.temporaryDirectory("convmem")
        // 200 x 200 positions: a global pool needs full 40000 x 40000 blocks (12.8 GB each).
        let model = #"{"input_shape": [200, 200, 1], "layers": [{"type": "conv", "channels": 4, "kernel": [3, 3], "padding": "SAME"}, {"type": "relu"}, {"type": "global_avg_pool"}, {"type": "dense", "width": 1}]}"#
        try Data(model.utf8).write(to: URL(fileURLWithPath: dir + "/model.json"))
        try Launcher.writeNPY(dir + "/x.npy", shape: [3, 40_000], values: Launcher.values(120_000, seed: 1))
        let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--kernel", "analytic",
                                       "--memory-budget-mb", "8192", "--out", dir + "/out"], ranks: ranks, timeout: 30)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("spatial covariance blocks") && result.stderr.contains("--kernel empirical"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/kernel.npy"))
    }

    @Test("parameter arrays of the wrong shape are refused with 65 naming the array, the layer and the shape it needs")
    func wrongParameters() throws {
        let fixture = Self.fixtures + "/empirical/conv2d_valid_relu_flatten_ntk"
        let dir = Launcher.temporaryDirectory("convparams")
        var arrays = try NPZFormat.decode(Data(contentsOf: URL(fileURLWithPath: fixture + "/params.npz")))
        let w = try #require(arrays["W0"])
        // The same values as (kh·kw·C_in, C_out): a dense layout for a conv layer.
        arrays["W0"] = NPYArray(shape: [w.shape[0] * w.shape[1] * w.shape[2], w.shape[3]], doubles: w.doubles())
        try NPZFormat.encode(arrays.keys.sorted().map { (name: $0, array: arrays[$0]!) }).write(to: URL(fileURLWithPath: dir + "/p.npz"))
        let result = try Launcher.run(["gram", "--data", fixture + "/x1.npy", "--model", fixture + "/model.json", "--params", dir + "/p.npz",
                                       "--out", dir + "/out"], ranks: 2, timeout: 30)
        #expect(result.status == 65, "\(result.stderr)")
        #expect(result.stderr.contains("W0 has shape (18, 4) but layer 0 needs (3, 3, 2, 4)"), "\(result.stderr)")
    }

    @Test("ntk init writes a CNN's parameters (HWIO conv weights, depth-first); predict, train and converge accept the network")
    func everyCommand() throws {
        let dir = Launcher.temporaryDirectory("convcmd")
        let model = #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 3, "kernel": [3, 3], "padding": "SAME", "W_std": 1.4142135623730951, "b_std": 0.1}, {"type": "relu"}, {"type": "residual", "layers": [{"type": "conv", "channels": 3, "kernel": [3, 3], "padding": "SAME"}, {"type": "relu"}]}, {"type": "avg_pool", "window": [2, 2]}, {"type": "flatten"}, {"type": "dense", "width": 2, "b_std": 0.1}]}"#
        try Data(model.utf8).write(to: URL(fileURLWithPath: dir + "/model.json"))
        try Launcher.writeNPY(dir + "/x.npy", shape: [10, 16], values: Launcher.values(160, seed: 4))
        try Launcher.writeNPY(dir + "/y.npy", shape: [10, 2], values: Launcher.values(20, seed: 5))
        let initialized = try Launcher.run(["init", "--model", dir + "/model.json", "--data", dir + "/x.npy", "--seed", "3", "--out", dir + "/p.npz"])
        try #require(initialized.status == 0, "\(initialized.stderr)")
        let arrays = try NPZFormat.decode(Data(contentsOf: URL(fileURLWithPath: dir + "/p.npz")))
        #expect(arrays.keys.sorted() == ["W0", "W1", "W2", "b0", "b2"])
        #expect(arrays["W0"]?.shape == [3, 3, 1, 3] && arrays["W1"]?.shape == [3, 3, 3, 3] && arrays["W2"]?.shape == [12, 2])
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

        // converge widens every hidden conv layer; its analytic CNTK needs Gaussian sums, so
        // this network has no residual block.
        let plain = #"{"input_shape": [4, 4, 1], "layers": [{"type": "conv", "channels": 3, "kernel": [3, 3], "padding": "SAME", "W_std": 1.4142135623730951, "b_std": 0.1}, {"type": "relu"}, {"type": "avg_pool", "window": [2, 2]}, {"type": "conv", "channels": 3, "kernel": [2, 2], "padding": "SAME", "W_std": 1.4142135623730951}, {"type": "relu"}, {"type": "global_avg_pool"}, {"type": "dense", "width": 2, "b_std": 0.1}]}"#
        try Data(plain.utf8).write(to: URL(fileURLWithPath: dir + "/plain.json"))
        let converge = try Launcher.run(["converge", "--data", dir + "/x.npy", "--model", dir + "/plain.json", "--widths", "4,256",
                                         "--seeds", "0,1", "--out", dir + "/c"], ranks: 2, timeout: 120)
        try #require(converge.status == 0, "\(converge.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/c/converge.json"))) as? [String: Any]
        let means = try #require(report?["mean_by_width"] as? [String: Double], "\(String(describing: report))")
        let distances = [means["4"] ?? .nan, means["256"] ?? .nan]
        // The empirical kernel approaches the CNTK as the channels grow (O(1/√width)).
        #expect(distances[1] < distances[0] / 3, "\(distances)")
    }
}
