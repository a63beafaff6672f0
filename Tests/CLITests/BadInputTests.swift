import Foundation
import Testing
import NumPyIO

/// Hand-made .npy bytes: any header, any payload.
func npyBytes(descr: String = "<f8", fortran: Bool = false, shape: String, payload: Data,
              major: UInt8 = 1, magic: String = "\u{93}NUMPY", descrLiteral: String? = nil) -> Data {
    var header = "{'descr': \(descrLiteral ?? "'\(descr)'"), 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data = Data(magic.unicodeScalars.map { UInt8($0.value) })
    data += [major, 0]
    let length = header.utf8.count
    if major == 1 { data += [UInt8(length & 0xff), UInt8(length >> 8)] } else { data += [UInt8(length & 0xff), UInt8((length >> 8) & 0xff), 0, 0] }
    data += Data(header.utf8)
    return data + payload
}

func doublesData(_ values: [Double]) -> Data { values.withUnsafeBytes { Data($0) } }

/// Every bad input of the reliability issue, at 1 rank and (one per kind of failure) at 3
/// ranks: the documented status, one message naming the problem, no hang, and no result
/// written.
@Suite(.serialized) struct BadInputTests {
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let arguments: [String]
        let status: Int32
        let message: String
        var description: String { name }
    }

    static let dir: String = {
        let dir = Launcher.temporaryDirectory("bad")
        let n = 5, d = 3
        let values = Launcher.values(n * d, seed: 5)
        func write(_ name: String, _ data: Data) { try! data.write(to: URL(fileURLWithPath: dir + "/" + name)) }
        write("good.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(values)))
        write("magic.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(values), magic: "\u{93}NUMPZ"))
        write("header-cut.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(values)).prefix(20))
        write("version.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(values), major: 9))
        var huge = Data([0x93] + Array("NUMPY".utf8) + [2, 0, 0xff, 0xff, 0xff, 0x7f])
        huge += Data(repeating: 0x20, count: 100)
        write("huge-header.npy", huge)
        write("data-cut.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(values)).dropLast(9))
        write("trailing.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(values) + Data([1, 2, 3])))
        write("complex.npy", npyBytes(descr: "<c16", shape: "(\(n), \(d))", payload: doublesData(values + values)))
        write("strings.npy", npyBytes(descr: "<U3", shape: "(\(n), \(d))", payload: Data(count: n * d * 12)))
        var nan = values; nan[4] = .nan
        write("nan.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(nan)))
        var inf = values; inf[7] = -.infinity
        write("inf.npy", npyBytes(shape: "(\(n), \(d))", payload: doublesData(inf)))
        write("empty.npy", npyBytes(shape: "(0, \(d))", payload: Data()))
        write("vector.npy", npyBytes(shape: "(\(n * d),)", payload: doublesData(values)))
        write("wide.npy", npyBytes(shape: "(\(n), 4)", payload: doublesData(values + Launcher.values(n, seed: 9))))
        // The same matrix stored column-major.
        var transposed = [Double](repeating: 0, count: n * d)
        for i in 0..<n { for j in 0..<d { transposed[j * n + i] = values[i * d + j] } }
        write("fortran.npy", npyBytes(fortran: true, shape: "(\(n), \(d))", payload: doublesData(transposed)))

        let w0 = Launcher.values(12, seed: 1), b0 = Launcher.values(4, seed: 2), w1 = Launcher.values(4, seed: 3), b1 = [0.5]
        let model = #"{"layers": [{"type": "dense", "width": 4, "b_std": 0.1}, {"type": "tanh"}, {"type": "dense", "width": 1, "b_std": 0.1}]}"#
        write("model.json", Data(model.utf8))
        write("swish.json", Data(#"{"layers": [{"type": "dense", "width": 4}, {"type": "swish"}, {"type": "dense", "width": 1}]}"#.utf8))
        write("zero.json", Data(#"{"layers": [{"type": "dense", "width": 0}]}"#.utf8))
        write("negative.json", Data(#"{"layers": [{"type": "dense", "width": -2}]}"#.utf8))
        write("broken.json", Data(#"{"layers": [{"type": "dense", "width": 4"#.utf8))

        func npz(_ name: String, _ arrays: [(String, [Int], [Double])]) {
            write(name, try! NPZFormat.encode(arrays.map { (name: $0.0, array: NPYArray(shape: $0.1, doubles: $0.2)) }))
        }
        npz("params.npz", [("W0", [3, 4], w0), ("b0", [4], b0), ("W1", [4, 1], w1), ("b1", [1], b1)])
        npz("missing.npz", [("W0", [3, 4], w0), ("b0", [4], b0), ("W1", [4, 1], w1)])
        npz("extra.npz", [("W0", [3, 4], w0), ("b0", [4], b0), ("W1", [4, 1], w1), ("b1", [1], b1), ("W2", [1, 1], [1])])
        npz("shape.npz", [("W0", [4, 3], w0), ("b0", [4], b0), ("W1", [4, 1], w1), ("b1", [1], b1)])
        npz("fanin.npz", [("W0", [4, 4], w0 + w1), ("b0", [4], b0), ("W1", [4, 1], w1), ("b1", [1], b1)])
        var wnan = w1; wnan[2] = .nan
        npz("nan.npz", [("W0", [3, 4], w0), ("b0", [4], b0), ("W1", [4, 1], wnan), ("b1", [1], b1)])
        write("notzip.npz", Data("PK but not really".utf8))
        // Hostile inputs: a structured dtype, booleans, a model with a duplicate key, widths
        // too large to hold, a model file too large to read, an archive member that would
        // inflate 10^4 times its array, and a 1.3 GB data file (sparse: no disk used).
        write("structured.npy", npyBytes(shape: "(\(n),)", payload: doublesData(values + values), descrLiteral: "('<f8', (2,))"))
        write("bool.npy", npyBytes(descr: "|b1", shape: "(\(n), \(d))", payload: Data(repeating: 1, count: n * d)))
        write("duplicate.json", Data(#"{"parameterization": "ntk", "parameterization": "standard", "layers": [{"type": "dense", "width": 1}]}"#.utf8))
        write("huge-width.json", Data(#"{"layers": [{"type": "dense", "width": 1000000000000000}, {"type": "relu"}, {"type": "dense", "width": 1}]}"#.utf8))
        write("billion.json", Data(#"{"layers": [{"type": "dense", "width": 1000000000}, {"type": "relu"}, {"type": "dense", "width": 1}]}"#.utf8))
        write("big-model.json", Data(("{\"description\": \"" + String(repeating: "x", count: 17 << 20) + "\", \"layers\": []}").utf8))
        write("bomb.npz", try! NPZFormat.encode([(name: "W0", array: NPYArray(shape: [3, 1_000_000], doubles: [Double](repeating: 0, count: 3_000_000))),
                                                (name: "b0", array: NPYArray(shape: [4], doubles: b0)),
                                                (name: "W1", array: NPYArray(shape: [4, 1], doubles: w1)),
                                                (name: "b1", array: NPYArray(shape: [1], doubles: b1))], compressed: true))
        write("block-shape.json", Data(#"{"layers": [{"type": "dense", "width": 4}, {"type": "residual", "layers": [{"type": "relu"}, {"type": "dense", "width": 5}]}, {"type": "dense", "width": 1}]}"#.utf8))
        write("block-empty.json", Data(#"{"layers": [{"type": "dense", "width": 4}, {"type": "residual", "layers": []}, {"type": "dense", "width": 1}]}"#.utf8))
        write("block-key.json", Data(#"{"layers": [{"type": "dense", "width": 4}, {"type": "residual", "layers": [{"type": "relu"}], "skip": "identity"}, {"type": "dense", "width": 1}]}"#.utf8))
        write("sparse.npy", npyBytes(shape: "(20000000, 8)", payload: Data()))
        let sparse = FileHandle(forWritingAtPath: dir + "/sparse.npy")!
        try! sparse.truncate(atOffset: UInt64(128 + 8 * 20_000_000 * 8))
        try! sparse.close()
        try! FileManager.default.createDirectory(atPath: dir + "/folder.npy", withIntermediateDirectories: true)
        try! Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/a-file"))
        return dir
    }()

    static func gram(_ data: String, model: String = "model.json", params: String? = "params.npz", extra: [String] = []) -> [String] {
        var args = ["gram", "--data", dir + "/" + data, "--model", dir + "/" + model]
        if let params { args += ["--params", dir + "/" + params] }
        return args + extra
    }

    static let cases: [Case] = [
        Case(name: "wrong magic", arguments: gram("magic.npy"), status: 65, message: "not a valid .npy"),
        Case(name: "truncated header", arguments: gram("header-cut.npy"), status: 65, message: "not a valid .npy"),
        Case(name: "unsupported version", arguments: gram("version.npy"), status: 65, message: "version"),
        Case(name: "oversized header", arguments: gram("huge-header.npy"), status: 65, message: "not a valid .npy"),
        Case(name: "truncated data", arguments: gram("data-cut.npy"), status: 65, message: "not a valid .npy"),
        Case(name: "trailing bytes", arguments: gram("trailing.npy"), status: 65, message: "not a valid .npy"),
        Case(name: "complex dtype", arguments: gram("complex.npy"), status: 65, message: "c16"),
        Case(name: "string dtype", arguments: gram("strings.npy"), status: 65, message: "U3"),
        Case(name: "NaN in data", arguments: gram("nan.npy"), status: 65, message: "non-finite value (nan) at row 1, column 1"),
        Case(name: "-Inf in data", arguments: gram("inf.npy"), status: 65, message: "non-finite value (-inf) at row 2, column 1"),
        Case(name: "empty data set", arguments: gram("empty.npy"), status: 65, message: "empty data set"),
        Case(name: "1-D data", arguments: gram("vector.npy"), status: 65, message: "must hold an array of shape (N, d)"),
        Case(name: "input width does not match the parameters", arguments: gram("wide.npy"), status: 65, message: "d = 4"),
        Case(name: "fan-in of W0 wrong", arguments: gram("good.npy", params: "fanin.npz"), status: 65, message: "W0 has shape (4, 4)"),
        Case(name: "missing parameter array", arguments: gram("good.npy", params: "missing.npz"), status: 65, message: "b1 is missing"),
        Case(name: "extra parameter array", arguments: gram("good.npy", params: "extra.npz"), status: 65, message: "unexpected array W2"),
        Case(name: "misshapen parameter array", arguments: gram("good.npy", params: "shape.npz"), status: 65, message: "W0 has shape (4, 3)"),
        Case(name: "NaN in parameters", arguments: gram("good.npy", params: "nan.npz"), status: 65, message: "W1 holds a non-finite value"),
        Case(name: "parameters not a zip", arguments: gram("good.npy", params: "notzip.npz"), status: 65, message: "not a valid .npz"),
        Case(name: "unknown activation", arguments: gram("good.npy", model: "swish.json", params: nil), status: 65, message: "unknown layer type \"swish\""),
        Case(name: "zero width", arguments: gram("good.npy", model: "zero.json", params: nil), status: 65, message: "positive integer, got 0"),
        Case(name: "negative width", arguments: gram("good.npy", model: "negative.json", params: nil), status: 65, message: "positive integer, got -2"),
        Case(name: "broken JSON", arguments: gram("good.npy", model: "broken.json", params: nil), status: 65, message: "not valid JSON"),
        Case(name: "missing data file", arguments: gram("nowhere.npy"), status: 66, message: "does not exist"),
        Case(name: "missing model file", arguments: gram("good.npy", model: "nowhere.json"), status: 66, message: "does not exist"),
        Case(name: "missing parameter file", arguments: gram("good.npy", params: "nowhere.npz"), status: 66, message: "does not exist"),
        Case(name: "a directory where a file is expected", arguments: gram("folder.npy"), status: 66, message: "is a directory"),
        Case(name: "output under a regular file", arguments: gram("good.npy", extra: ["--out", dir + "/a-file/out"]), status: 73, message: "cannot create the output directory"),
        Case(name: "output is a regular file", arguments: gram("good.npy", extra: ["--out", dir + "/a-file"]), status: 73, message: "not a directory"),
        Case(name: "unknown flag", arguments: gram("good.npy", extra: ["--wdith", "3"]), status: 64, message: "Unknown option '--wdith'"),
        Case(name: "params and seed together", arguments: gram("good.npy", extra: ["--seed", "3"]), status: 64, message: "exclude each other"),
        Case(name: "bad output mode", arguments: gram("good.npy", extra: ["--output-kernel", "trace"]), status: 64, message: "trace"),
        Case(name: "a residual block that changes the width", arguments: gram("good.npy", model: "block-shape.json", params: nil),
             status: 65, message: "layer 1: the residual block maps width 4 to 5"),
        Case(name: "an empty residual block", arguments: gram("good.npy", model: "block-empty.json", params: nil),
             status: 65, message: "layer 1: a residual block needs at least one layer"),
        Case(name: "an unknown key in a residual block", arguments: gram("good.npy", model: "block-key.json", params: nil),
             status: 65, message: "unknown key \"skip\" for a residual layer"),
        Case(name: "structured dtype", arguments: gram("structured.npy"), status: 65, message: "structured or subarray dtype"),
        Case(name: "boolean data", arguments: gram("bool.npy"), status: 65, message: "holds booleans; expected float64 or float32"),
        Case(name: "duplicate JSON key", arguments: gram("good.npy", model: "duplicate.json", params: nil), status: 65, message: "duplicate key \"parameterization\""),
        Case(name: "width beyond the integer bound", arguments: gram("good.npy", model: "huge-width.json", params: nil), status: 65, message: "at most 2147483647"),
        Case(name: "a billion-wide layer is refused by the memory plan before it is drawn", arguments: gram("good.npy", model: "billion.json", params: nil),
             status: 64, message: "P = 4e+09 parameters"),
        Case(name: "a model file over 16 MiB is refused before it is parsed", arguments: gram("good.npy", model: "big-model.json", params: nil),
             status: 65, message: "a model file may have"),
        Case(name: "an archive member that would inflate past its array is refused before inflating", arguments: gram("good.npy", params: "bomb.npz"),
             status: 65, message: "bytes allowed for it"),
        Case(name: "a data file larger than the memory budget is refused before it is read", arguments: gram("sparse.npy", params: nil, extra: ["--depth", "1", "--width", "4", "--eigen", "none", "--memory-budget-mb", "100"]).filter { $0 != "--model" && !$0.hasSuffix("model.json") },
             status: 64, message: "the inputs alone: data 1.19 GiB"),
    ]

    /// The cases also run at 3 ranks: one for each place a failure is found (the .npy
    /// header, the data scan, the parameter archive, the model JSON, the shape plan, a
    /// missing file, rank 0's output directory, argument parsing, the memory plan), so that
    /// every path of agreeing on a failure is exercised under mpirun. The others differ from
    /// these only in the message, which the 1-rank runs check; running all of them at 3 ranks
    /// took 80 s more of the suite.
    static let multiRank: Set<String> = [
        "wrong magic", "NaN in data", "fan-in of W0 wrong", "NaN in parameters", "unknown activation",
        "a residual block that changes the width", "missing data file", "output under a regular file", "output is a regular file",
        "unknown flag", "a billion-wide layer is refused by the memory plan before it is drawn",
        "an archive member that would inflate past its array is refused before inflating",
        "a data file larger than the memory budget is refused before it is read", "duplicate JSON key",
    ]
    static let runs: [(Int, Case)] = cases.map { (1, $0) } + cases.filter { multiRank.contains($0.name) }.map { (3, $0) }

    @Test("bad inputs fail fast with the documented status and one message", arguments: runs)
    func refused(ranks: Int, bad: Case) throws {
        var arguments = bad.arguments
        let out = Self.dir + "/out-\(UUID().uuidString.prefix(6))"
        if !arguments.contains("--out") { arguments += ["--out", out] }
        let result = try Launcher.run(arguments, ranks: ranks, timeout: 30)
        #expect(!result.timedOut, "hung")
        #expect(result.seconds < 20)
        #expect(result.status == bad.status, "\(result.stderr)")
        #expect(result.stderr.contains(bad.message), "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n").filter { $0.contains("ntk: error:") || $0.hasPrefix("Error:") }
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/kernel.npy"))
    }

    @Test("a Fortran-order data file is read correctly: the same kernel as C order")
    func fortranOrder() throws {
        var kernels: [[Double]] = []
        for file in ["good.npy", "fortran.npy"] {
            let out = Self.dir + "/order-\(file)"
            let result = try Launcher.run(Self.gram(file, extra: ["--out", out, "--force"]), ranks: 2, timeout: 30)
            try #require(result.status == 0, "\(result.stderr)")
            kernels.append(try Launcher.readNPY(out + "/kernel.npy").doubles())
        }
        #expect(kernels[0] == kernels[1])
    }

    @Test("an output directory the user cannot write fails with 73 (run as nobody)")
    func notWritable() throws {
        guard getuid() == 0 else {
            print("notWritable: skipped, needs root to switch to the nobody user")
            return
        }
        let protected = Self.dir + "/protected"
        try FileManager.default.createDirectory(atPath: protected, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        // Readable inputs for nobody.
        _ = try Launcher.runTool("/bin/chmod", ["-R", "a+rX", Self.dir])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", Launcher.binary] + Self.gram("good.npy") + ["--out", protected + "/out"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 73, "\(message)")
        #expect(message.contains("cannot create the output directory"), "\(message)")
    }
}

@Suite(.serialized) struct MemoryPlanTests {
    @Test("a run whose memory plan exceeds the budget is refused before any work with 64 and options that need less, at 1 and 3 ranks", arguments: [1, 3])
    func refused(ranks: Int) throws {
        let dir = Launcher.temporaryDirectory("mem")
        try Launcher.writeNPY(dir + "/x.npy", shape: [2000, 4], values: Launcher.values(8000, seed: 1))
        let result = try Launcher.run(["gram", "--data", dir + "/x.npy", "--depth", "1", "--width", "8", "--eigen", "vectors",
                                       "--out", dir + "/out", "--memory-budget-mb", "100"], ranks: ranks, timeout: 60)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--eigen values or none"), "\(result.stderr)")
        #expect(result.seconds < 20)
        #expect(!FileManager.default.fileExists(atPath: dir + "/out/checkpoint"), "refused before any work")
    }
}
