import TileKernels

/// Checks that must pass before any work.
public enum Preflight {
    /// Why this CPU cannot run this build's tile kernels, or nil when it can.
    public static var cpuProblem: String? {
        InnerProducts.cpuSupported ? nil
            : "this ntk was built for \(InnerProducts.instructionSet), which this CPU lacks; rebuild it on this machine, or with NTK_TARGET_CPU=generic (or an LLVM CPU name such as haswell) for older nodes"
    }
}
