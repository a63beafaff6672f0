// swift-tools-version:6.0
// The layout mirrors the architecture, bottom to top:
//   C shims (CMPI, CLAPACK, CZlib, CCPU, CSystem) -> typed MPI layer (MPI) -> numerical modules
//   (NumPyIO, Network, TileKernels, LinearAlgebra) -> distributed engine (GramEngine)
//   -> command line (ntk).
import Foundation
import PackageDescription

/// The instruction set of the tile kernels: NTK_TARGET_CPU (an LLVM CPU name such as
/// skylake-avx512 or haswell, or "generic" for baseline x86-64), else the best of
/// AVX-512 / AVX2+FMA that the build machine's CPU has. Build on (or for) the nodes that
/// run the jobs; a binary refuses, with a message, a CPU that lacks what it was built for.
let tileKernelSettings: [SwiftSetting] = {
    let environment = ProcessInfo.processInfo.environment["NTK_TARGET_CPU"]
    var cpu: String? = nil
    if let environment {
        cpu = environment == "generic" ? nil : environment
    } else if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        let flags = Set(info.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
        if flags.isSuperset(of: ["avx512f", "avx512dq", "avx512vl", "fma"]) { cpu = "skylake-avx512" }
        else if flags.isSuperset(of: ["avx2", "fma"]) { cpu = "haswell" }
    }
    guard let cpu else { return [] }
    let avx512 = ["skylake-avx512", "skx", "cascadelake", "cooperlake", "icelake-server", "icelake-client", "tigerlake",
                  "sapphirerapids", "emeraldrapids", "graniterapids", "znver4", "znver5"].contains(cpu)
    var settings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", cpu]), .define("NTK_TILE_FMA")]
    if avx512 { settings.append(.define("NTK_TILE_AVX512")) }
    return settings
}()

let package = Package(
    name: "ntk",
    products: [
        .executable(name: "ntk", targets: ["ntk"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    ],
    targets: [
        // C shims: the only code that sees MPI's, LAPACK's and zlib's C declarations.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CLAPACK", path: "Sources/CLAPACK", pkgConfig: "lapacke",
                       providers: [.apt(["liblapacke-dev", "libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CScaLAPACK", path: "Sources/CScaLAPACK", pkgConfig: "scalapack-openmpi",
                       providers: [.apt(["libscalapack-openmpi-dev"])]),
        .systemLibrary(name: "CELPA", path: "Sources/CELPA", pkgConfig: "elpa",
                       providers: [.apt(["libelpa-dev"])]),

        // Thin typed layer over MPI.
        .target(name: "MPI", dependencies: ["CMPI"]),

        // Numerical modules.
        .target(name: "NumPyIO", dependencies: ["CZlib"]),
        .target(name: "LinearAlgebra", dependencies: ["CLAPACK", "CCPU"]),
        .systemLibrary(name: "CCPU", path: "Sources/CCPU"),
        .systemLibrary(name: "CSystem", path: "Sources/CSystem"),
        .target(name: "TileKernels", dependencies: ["CCPU"], swiftSettings: tileKernelSettings),
        .systemLibrary(name: "CSVGRaster", path: "Sources/CSVGRaster"),
        .target(name: "Plots", dependencies: ["CSVGRaster"]),
        .target(name: "Network", dependencies: ["LinearAlgebra", "TileKernels"]),
        // The distributed symmetric eigensolver (ScaLAPACK on a process grid over all ranks).
        .target(name: "DistributedEigen", dependencies: ["MPI", "CScaLAPACK", "CELPA"]),
        .target(name: "LearningDynamics", dependencies: ["LinearAlgebra"]),

        // The distributed Gram engine: tile plan, per-rank compute, gather, eigensolve, outputs.
        .target(name: "GramEngine", dependencies: ["CSystem", "MPI", "NumPyIO", "LinearAlgebra", "TileKernels", "Network", "Plots",
                                                  "LearningDynamics", "DistributedEigen"]),

        // Command line: argument parsing and little else.
        .executableTarget(name: "ntk", dependencies: [
            "GramEngine", "LearningDynamics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmark of the tile kernels against dgemm (scripts/bench.sh runs it).
        .executableTarget(name: "tile-bench", dependencies: ["TileKernels", "LinearAlgebra"]),
        // Checks DistributedEigen against LAPACK under mpirun (DistributedEigenTests launches it).
        .executableTarget(name: "scalapack-check", dependencies: ["DistributedEigen", "MPI", "LinearAlgebra", "NumPyIO"]),

        .testTarget(name: "NumPyIOTests", dependencies: ["NumPyIO"], resources: [.copy("Resources")]),
        .testTarget(name: "LinearAlgebraTests", dependencies: ["LinearAlgebra"]),
        .testTarget(name: "DistributedEigenTests", dependencies: ["LinearAlgebra"]),
        .testTarget(name: "TileKernelsTests", dependencies: ["TileKernels"]),
        // Tests read the committed reference fixtures in Tests/Fixtures by path.
        .testTarget(name: "NetworkTests", dependencies: ["Network", "NumPyIO"]),
        .testTarget(name: "GramEngineTests", dependencies: ["GramEngine", "Network", "NumPyIO", "LinearAlgebra"]),
        .testTarget(name: "CLITests", dependencies: ["NumPyIO"]),
        .testTarget(name: "PlotsTests", dependencies: ["Plots"]),
        .testTarget(name: "LearningDynamicsTests", dependencies: ["LearningDynamics", "LinearAlgebra", "NumPyIO"]),
    ]
)
