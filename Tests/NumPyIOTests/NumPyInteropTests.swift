import Foundation
import NumPyIO
import Testing

/// Checks that files written here load in NumPy and match `np.save` byte for byte. Needs
/// `python3` with numpy, so it is off by default; run with
/// `NUMPYIO_PYTHON_CHECK=1 swift test --filter NumPyInteropTests`.
@Suite("Interoperability with NumPy")
struct NumPyInteropTests {
    static let arrays: [(name: String, array: NPYArray)] = [
        ("f8", NPYArray(shape: [2, 3], doubles: [1, -2, 3.5, .infinity, -0.0, 1e-300])),
        ("f4", NPYArray(shape: [3], float32s: [0.5, -1, 3e38])),
        ("i8", NPYArray(shape: [2, 1, 2], int64s: [.min, -1, 1 << 40, .max])),
        ("i4", NPYArray(shape: [2], int32s: [.min, .max])),
        ("i2", NPYArray(shape: [2], int16s: [.min, .max])),
        ("i1", NPYArray(shape: [2], int8s: [.min, .max])),
        ("u1", NPYArray(shape: [2], uint8s: [0, 255])),
        ("b1", NPYArray(shape: [3], bools: [true, false, true])),
        ("scalar", NPYArray(shape: [], doubles: [2.5])),
        ("empty", NPYArray(shape: [0, 5], doubles: [])),
        ("résumé", NPYArray(shape: [1], int64s: [7])),
        ("big", NPYArray(shape: [300, 200], doubles: (0..<60000).map { Double($0 % 7) })),
    ]

    static let script = #"""
    import io, sys
    import numpy as np
    d = sys.argv[1]
    expected = {
        "f8": np.array([1, -2, 3.5, np.inf, -0.0, 1e-300]).reshape(2, 3),
        "f4": np.array([0.5, -1, 3e38], dtype=np.float32),
        "i8": np.array([-2**63, -1, 2**40, 2**63 - 1], dtype=np.int64).reshape(2, 1, 2),
        "i4": np.array([-2**31, 2**31 - 1], dtype=np.int32),
        "i2": np.array([-2**15, 2**15 - 1], dtype=np.int16),
        "i1": np.array([-128, 127], dtype=np.int8),
        "u1": np.array([0, 255], dtype=np.uint8),
        "b1": np.array([True, False, True]),
        "scalar": np.array(2.5),
        "empty": np.zeros((0, 5)),
        "résumé": np.array([7], dtype=np.int64),
        "big": (np.arange(60000) % 7).astype(np.float64).reshape(300, 200),
    }
    def same(a, b):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    for name, want in expected.items():
        path = f"{d}/{name}.npy"
        got = np.load(path, allow_pickle=False)
        assert same(got, want), name
        buf = io.BytesIO()
        np.save(buf, want)
        assert buf.getvalue() == open(path, "rb").read(), f"{name}: bytes differ from np.save"
    for archive in ["stored", "deflated", "zip64_stored", "zip64_deflated"]:
        with np.load(f"{d}/{archive}.npz", allow_pickle=False) as z:
            assert list(z.keys()) == list(expected), (archive, list(z.keys()))
            for name, want in expected.items():
                assert same(z[name], want), (archive, name)
    print("numpy", np.__version__, "read", len(expected), "arrays and 4 archives")
    """#

    @Test("Files written here load in NumPy and match np.save byte for byte",
          .enabled(if: ProcessInfo.processInfo.environment["NUMPYIO_PYTHON_CHECK"] != nil))
    func numpyReadsOurFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("NumPyIOInterop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, array) in Self.arrays {
            try NPYFormat.write(array, to: directory.appendingPathComponent("\(name).npy"))
        }
        try NPZFormat.write(Self.arrays, compressed: false, to: directory.appendingPathComponent("stored.npz"))
        try NPZFormat.write(Self.arrays, compressed: true, to: directory.appendingPathComponent("deflated.npz"))
        try NPZFormat.encode(Self.arrays, compressed: false, forceZip64: true)
            .write(to: directory.appendingPathComponent("zip64_stored.npz"))
        try NPZFormat.encode(Self.arrays, compressed: true, forceZip64: true)
            .write(to: directory.appendingPathComponent("zip64_deflated.npz"))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, directory.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print(text)
        #expect(process.terminationStatus == 0, "\(text)")
    }
}
