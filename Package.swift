// swift-tools-version:6.0
// The layout mirrors the architecture, bottom to top:
//   C shims (CMPI, CLAPACK, CZlib) -> typed MPI layer (MPI) -> numerical modules
//   (NumPyIO, Network, TileKernels, LinearAlgebra) -> distributed engine (GramEngine)
//   -> command line (ntk).
import PackageDescription

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

        // Thin typed layer over MPI.
        .target(name: "MPI", dependencies: ["CMPI"]),

        // Numerical modules.
        .target(name: "NumPyIO", dependencies: ["CZlib"]),
        .target(name: "LinearAlgebra", dependencies: ["CLAPACK"]),
        .target(name: "TileKernels"),
        .target(name: "Plots"),
        .target(name: "Network", dependencies: ["LinearAlgebra"]),
        .target(name: "LearningDynamics", dependencies: ["LinearAlgebra"]),

        // The distributed Gram engine: tile plan, per-rank compute, gather, eigensolve, outputs.
        .target(name: "GramEngine", dependencies: ["MPI", "NumPyIO", "LinearAlgebra", "TileKernels", "Network", "Plots", "LearningDynamics"]),

        // Command line: argument parsing and little else.
        .executableTarget(name: "ntk", dependencies: [
            "GramEngine", "LearningDynamics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "NumPyIOTests", dependencies: ["NumPyIO"], resources: [.copy("Resources")]),
        .testTarget(name: "LinearAlgebraTests", dependencies: ["LinearAlgebra"]),
        .testTarget(name: "TileKernelsTests", dependencies: ["TileKernels"]),
        // Tests read the committed reference fixtures in Tests/Fixtures by path.
        .testTarget(name: "NetworkTests", dependencies: ["Network", "NumPyIO"]),
        .testTarget(name: "GramEngineTests", dependencies: ["GramEngine", "Network", "NumPyIO", "LinearAlgebra"]),
        .testTarget(name: "CLITests", dependencies: ["NumPyIO"]),
        .testTarget(name: "LearningDynamicsTests", dependencies: ["LearningDynamics", "LinearAlgebra", "NumPyIO"]),
    ]
)
