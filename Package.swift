// swift-tools-version:6.0
// The layout mirrors the architecture, bottom to top:
//   C shims (CMPI, CLAPACK, CScaLAPACK, CELPA, CZlib, CCPU, CSystem, CSVGRaster) -> typed MPI layer (MPI) -> numerical modules
//   (NumPyIO, Network, TileKernels, LinearAlgebra) -> distributed engine (GramEngine)
//   -> command line (ntk).
import Foundation
import PackageDescription

/// The tile kernels are compiled three times from Sources/TileKernelsSource, once per
/// instruction set, and TileKernels picks the best one the CPU runs at run time: one
/// binary for every x86-64 node. Each variant is a target whose sources are symbolic
/// links to the shared ones.
let kernelVariants: [(name: String, settings: [SwiftSetting])] = [
    ("TileKernelsAVX512", [.unsafeFlags(["-target-cpu", "skylake-avx512"]), .define("NTK_TILE_FMA"), .define("NTK_TILE_AVX512")]),
    ("TileKernelsAVX2", [.unsafeFlags(["-target-cpu", "haswell"]), .define("NTK_TILE_FMA")]),
    ("TileKernelsBaseline", []),
]

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
        .target(name: "TileKernels", dependencies: ["CCPU"] + kernelVariants.map { Target.Dependency.target(name: $0.name) }),
    ] + kernelVariants.map { Target.target(name: $0.name, dependencies: ["CCPU"], swiftSettings: $0.settings) } + [
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
        .testTarget(name: "CLITests", dependencies: ["NumPyIO", "LinearAlgebra"]),
        .testTarget(name: "PlotsTests", dependencies: ["Plots"]),
        .testTarget(name: "LearningDynamicsTests", dependencies: ["LearningDynamics", "LinearAlgebra", "NumPyIO"]),
    ]
)
