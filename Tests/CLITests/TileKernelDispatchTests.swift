import Foundation
import Testing

/// One binary, three builds of the tile kernels: the run picks the best the CPU runs and
/// NTK_TILE_ISA asks for a lower one.
@Suite(.serialized) struct TileKernelDispatchTests {
    static func levels() -> [String] {
        // /proc/cpuinfo's flags, as the CPU check in CCPU reads them (cpuid).
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(info.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
        var levels: [String] = []
        if flags.isSuperset(of: ["avx512f", "avx512dq", "avx512vl", "fma"]) { levels.append("avx512") }
        if flags.isSuperset(of: ["avx2", "fma"]) { levels.append("avx2") }
        return levels + ["baseline"]
    }

    /// AVX-512 and AVX2 run the same chains of fused multiply-adds: bitwise equal. The
    /// baseline kernels round each product before adding: 1e-13 relative leaves room for
    /// that (~k ε with k ≤ 512 here) and catches any real error.
    @Test("every instruction set this CPU runs gives the same kernel (FMA levels bitwise, baseline to 1e-13) on 2 ranks; summary.json records the choice, the best by default")
    func levelsAgree() throws {
        let dir = Launcher.temporaryDirectory("isa")
        try Launcher.writeNPY(dir + "/x.npy", shape: [40, 7], values: Launcher.values(280, seed: 12))
        let common = ["gram", "--data", dir + "/x.npy", "--depth", "2", "--width", "48", "--out-dim", "2", "--seed", "3",
                      "--tile", "16", "--eigen", "none"]
        let levels = Self.levels()
        var kernels: [String: [Double]] = [:]
        for level in levels + ["default"] {
            let out = dir + "/" + level
            let environment = level == "default" ? [:] : ["NTK_TILE_ISA": level]
            let result = try Launcher.run(common + ["--out", out], ranks: 2, timeout: 60, environment: environment)
            try #require(result.status == 0, "\(level): \(result.stderr)")
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as! [String: Any]
            #expect(summary["tile_kernels"] as? String == (level == "default" ? levels[0] : level))
            kernels[level] = try Launcher.loadDoubles(out + "/kernel.npy")
        }
        let reference = kernels[levels[0]]!
        #expect(kernels["default"]! == reference)
        if levels.contains("avx512") && levels.contains("avx2") { #expect(kernels["avx512"]! == kernels["avx2"]!) }
        #expect(Launcher.relative(kernels["baseline"]!, reference) <= 1e-13)
    }
}
