import Foundation
import Testing
import NumPyIO

/// `ntk gram` across several hosts, simulated on one machine: every host is a Linux network
/// namespace with its own veth interface, mpirun runs in a "head" namespace that holds the
/// bridge, and Open MPI's rsh launcher reaches the hosts through scripts/netns/rsh-agent.sh
/// (`ip netns exec HOST`) instead of ssh. All MPI traffic is TCP over the veths
/// (`btl tcp,self`, no shared memory), as between real machines. See docs/multihost-test.md.
///
/// Needs root, iproute2 and a kernel that allows network namespaces; elsewhere the suite is
/// skipped and the reason printed on stderr. Serialized, every launch bounded by mpirun
/// --timeout and an outer kill; the namespaces (and so every link) are removed on every
/// path out of a test.
@Suite(.serialized, .enabled(if: MultiHostAvailability.available,
                             "needs root, iproute2 (ip) and permission to create network namespaces; the reason is on stderr"))
struct MultiHostTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let hostsScript = packageRoot + "/scripts/netns/netns-hosts.sh"
    static let agentScript = packageRoot + "/scripts/netns/rsh-agent.sh"
    /// The subnet on the veths. It exists only inside this run's namespaces.
    static let subnet = "10.213.0"
    /// iproute2's ip (in /usr/sbin or /sbin, which may not be on PATH).
    static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ip"

    // MARK: - Environment

    /// A command's status and output.
    struct Output { let status: Int32; let stdout: String; let stderr: String }

    /// Runs `path arguments` to completion, bounded by `timeout` seconds (coreutils timeout).
    static func tool(_ path: String, _ arguments: [String], timeout: Int = 60) -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["timeout", "-k", "5", String(timeout), path] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return Output(status: -1, stdout: "", stderr: "\(error)") }
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        process.waitUntilExit()
        group.wait()
        return Output(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    static func note(_ message: String) {
        FileHandle.standardError.write(Data("MultiHostTests: \(message)\n".utf8))
    }

    /// nil when namespaces can be made here; otherwise why not (not root, no ip, refused).
    static var skipReason: String? { MultiHostAvailability.skipReason }

    /// Skips (cancels) the current test, saying why, when the machine does not allow the setup.
    static func requireNamespaces() throws {
        guard let reason = skipReason else { return }
        note("SKIPPED, \(reason)")
        try Test.cancel("multi-host test skipped: \(reason)")
    }

    // MARK: - Simulated cluster

    /// A head namespace (mpirun, bridge) and `count` host namespaces, named uniquely for
    /// this run: ntkmh-<test process pid>-<random>. `down()` removes them all; `netns-hosts.sh
    /// gc` removes those left by a crashed run (their owner pid is gone).
    final class Cluster {
        let prefix: String
        let hosts: [String]
        var head: String { prefix + "-head" }

        init(hosts count: Int) throws {
            _ = MultiHostTests.tool(MultiHostTests.hostsScript, ["gc"])
            let random = UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(6).lowercased()
            prefix = "ntkmh-\(getpid())-\(random)"
            let up = MultiHostTests.tool(MultiHostTests.hostsScript, ["up", prefix, String(count), MultiHostTests.subnet])
            guard up.status == 0 else {
                _ = MultiHostTests.tool(MultiHostTests.hostsScript, ["down", prefix])
                throw ClusterError(message: "netns-hosts.sh up failed (\(up.status)): \(up.stderr)")
            }
            hosts = up.stdout.split(separator: "\n").map(String.init)
            guard hosts.count == count else {
                _ = MultiHostTests.tool(MultiHostTests.hostsScript, ["down", prefix])
                throw ClusterError(message: "netns-hosts.sh up printed \(hosts) for \(count) hosts")
            }
        }

        /// Kills everything inside the namespaces and deletes them (and with them the veths
        /// and the bridge). Records an issue if anything is left.
        func down() {
            let result = MultiHostTests.tool(MultiHostTests.hostsScript, ["down", prefix])
            #expect(result.status == 0, "netns-hosts.sh down \(prefix): \(result.stderr)")
            let left = MultiHostTests.tool(MultiHostTests.ip, ["netns", "list"]).stdout.split(separator: "\n").filter { $0.hasPrefix(prefix + "-") }
            #expect(left.isEmpty, "namespaces left behind: \(left)")
        }

        /// The live (not zombie) pids inside namespace `name`.
        func pids(_ name: String) -> [Int32] {
            MultiHostTests.tool(MultiHostTests.hostsScript, ["pids", name]).stdout
                .split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }.filter { MultiHostTests.isLive($0) }
        }

        /// The live pids in every namespace of the cluster.
        func allPids() -> [String: [Int32]] {
            var result: [String: [Int32]] = [:]
            for name in [head] + hosts {
                let list = pids(name)
                if !list.isEmpty { result[name] = list }
            }
            return result
        }
    }

    struct ClusterError: Error, CustomStringConvertible { let message: String; var description: String { message } }

    /// False for a pid that is gone or a zombie (dead, waiting to be reaped).
    static func isLive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }

    /// The live ntk rank processes writing to `out`, in any namespace.
    static func rankPids(_ out: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                  let cmdline = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { return nil }
            let args = cmdline.split(separator: "\0").map(String.init)
            return args.first == Launcher.binary && args.contains(out) && isLive(pid) ? pid : nil
        }.sorted()
    }

    // MARK: - mpirun across the namespaces

    /// A running mpirun (in the head namespace) with its output going to files.
    final class Job {
        let process: Process
        let stdoutPath: String
        let stderrPath: String
        let started = Date()
        let timeout: Int

        init(process: Process, stdoutPath: String, stderrPath: String, timeout: Int) {
            self.process = process; self.stdoutPath = stdoutPath; self.stderrPath = stderrPath; self.timeout = timeout
        }

        var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
        var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

        /// Waits for the end, at most `seconds` (default: mpirun's --timeout plus 10 s); then
        /// SIGTERM, SIGKILL. Returns the status, or nil when it had to be killed.
        func wait(seconds: Double? = nil) -> Int32? {
            let limit = seconds ?? Double(timeout + 10)
            let start = Date()
            while process.isRunning && Date().timeIntervalSince(start) < limit { usleep(20_000) }
            if process.isRunning {
                process.terminate()
                let grace = Date()
                while process.isRunning && Date().timeIntervalSince(grace) < 2 { usleep(20_000) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
                return nil
            }
            return process.terminationStatus
        }
    }

    /// The Open MPI settings for the simulated cluster.
    static func mpirunArguments(cluster: Cluster, hostfile: String, ranks: Int, timeout: Int, keepalive: Bool,
                                forward: [String]) -> [String] {
        var args = ["mpirun", "--hostfile", hostfile,
                    // ssh replaced by `ip netns exec HOST`; mpirun starts every orted itself.
                    "--mca", "plm_rsh_agent", agentScript,
                    "--mca", "plm_rsh_no_tree_spawn", "1",
                    // TCP between all ranks, also within a host, on the veth subnet only.
                    "--mca", "btl", "tcp,self",
                    "--mca", "btl_tcp_if_include", subnet + ".0/24",
                    "--mca", "oob_tcp_if_include", subnet + ".0/24",
                    "--bind-to", "none", "--display-map", "--timeout", String(timeout), "-np", String(ranks)]
        if keepalive {
            // Notice a silent peer (cut link, no RST) after ~1 + 3 x 1 s instead of 300 + 9 x 20 s.
            args += ["--mca", "oob_tcp_keepalive_time", "1", "--mca", "oob_tcp_keepalive_intvl", "1",
                     "--mca", "oob_tcp_keepalive_probes", "3"]
        }
        for name in forward { args += ["-x", name] }
        return args
    }

    /// Starts `ntk arguments` on `cluster`'s hosts with `slots` slots each (one rank per slot).
    static func start(_ cluster: Cluster, slots: Int, dir: String, arguments: [String], timeout: Int = 60,
                      keepalive: Bool = false, environment: [String: String] = [:]) throws -> Job {
        let hostfile = dir + "/hostfile-\(UUID().uuidString.prefix(6))"
        try Data(cluster.hosts.map { "\($0) slots=\(slots)\n" }.joined().utf8).write(to: URL(fileURLWithPath: hostfile))
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        for (key, value) in environment { env[key] = value }
        let forward = ["OPENBLAS_NUM_THREADS"] + environment.keys.sorted()
        let process = Process()
        process.environment = env
        // Through perl, to start mpirun with default signal dispositions and an empty signal
        // mask (the test runner's threads block signals, and a child inherits that mask);
        // perl execs ip, which execs mpirun inside the head namespace: one pid throughout.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); $SIG{$_} = 'DEFAULT' for qw(USR1 TERM INT); exec @ARGV or die",
                             ip, "netns", "exec", cluster.head]
            + mpirunArguments(cluster: cluster, hostfile: hostfile, ranks: slots * cluster.hosts.count, timeout: timeout,
                              keepalive: keepalive, forward: forward)
            + [Launcher.binary] + arguments
        let tag = UUID().uuidString.prefix(6)
        let stdoutPath = dir + "/mpirun-\(tag).out", stderrPath = dir + "/mpirun-\(tag).err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return Job(process: process, stdoutPath: stdoutPath, stderrPath: stderrPath, timeout: timeout)
    }

    // MARK: - Inputs

    static let model = """
        {"parameterization": "ntk", "layers": [
          {"type": "dense", "width": 8, "W_std": 1.5, "b_std": 0.1}, {"type": "erf"},
          {"type": "dense", "width": 6, "W_std": 1.2}, {"type": "relu"},
          {"type": "dense", "width": 2, "W_std": 1.0, "b_std": 0.3}]}
        """

    static func inputs(n: Int) throws -> String {
        let dir = Launcher.temporaryDirectory("multihost")
        try Launcher.writeNPY(dir + "/x.npy", shape: [n, 4], values: Launcher.values(n * 4, seed: 11))
        try Data(model.utf8).write(to: URL(fileURLWithPath: dir + "/model.json"))
        return dir
    }

    // MARK: - Tests

    @Test("ntk gram on 2 namespace hosts x 1 and 2 slots over TCP gives the single-host kernel (1e-12 relative)", arguments: [1, 2])
    func sameKernel(slots: Int) throws {
        try Self.requireNamespaces()
        Self.note("ntk binary: \(Launcher.binary)")
        let n = 29
        let dir = try Self.inputs(n: n)
        let gram = ["gram", "--data", dir + "/x.npy", "--model", dir + "/model.json", "--seed", "3", "--tile", "4",
                    "--output-kernel", "full", "--eigen", "vectors", "--no-progress"]
        let single = try Launcher.run(gram + ["--out", dir + "/single"], timeout: 60)
        try #require(single.status == 0, "\(single.stderr)")
        let reference = try Launcher.readNPY(dir + "/single/kernel.npy").doubles()

        let cluster = try Cluster(hosts: 2)
        defer { cluster.down() }
        let out = dir + "/multi"
        let job = try Self.start(cluster, slots: slots, dir: dir, arguments: gram + ["--out", out])
        let status = job.wait()
        let seconds = Date().timeIntervalSince(job.started)
        Self.note("2 hosts x \(slots) slots: status \(status.map(String.init) ?? "killed") in \(String(format: "%.2f", seconds)) s")
        try #require(status == 0, "mpirun: \(job.stderr)\n\(job.stdout)")
        // Both hosts got their ranks (the map mpirun printed names them).
        // Every host got `slots` ranks (the map mpirun printed says so), none ran beside mpirun.
        for host in cluster.hosts {
            let line = job.stdout.split(separator: "\n").first { $0.contains("Data for node: \(host)") }
            #expect(line?.contains("Num procs: \(slots)") == true, "\(host) in the map: \(job.stdout)")
        }
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as? [String: Any]
        #expect(summary?["ranks"] as? Int == 2 * slots)
        let kernel = try Launcher.readNPY(out + "/kernel.npy")
        #expect(kernel.shape == [n, n, 2, 2])
        let values = kernel.doubles()
        try #require(values.count == reference.count)
        let scale = reference.map(abs).max()!
        let diff = zip(values, reference).map { abs($0 - $1) }.max()!
        Self.note("2 hosts x \(slots) slots: max |difference| / max |entry| = \(diff / scale)\(values == reference ? " (bitwise identical)" : "")")
        #expect(diff <= 1e-12 * scale, "relative difference \(diff / scale)")
        #expect(Self.rankPids(out).isEmpty)
    }

    /// Starts a slowed run on 2 hosts x 2 slots and waits until it is mid-run, with every
    /// rank started on both hosts.
    static func startSlowRun(_ cluster: Cluster, dir: String, out: String, keepalive: Bool) throws -> Job {
        let job = try start(cluster, slots: 2, dir: dir,
                            arguments: ["gram", "--data", dir + "/x.npy", "--depth", "2", "--width", "16", "--tile", "4",
                                        "--seed", "1", "--out", out, "--no-progress"],
                            timeout: 90, keepalive: keepalive, environment: ["NTK_TILE_DELAY_MS": "200"])
        let start = Date()
        while Date().timeIntervalSince(start) < 40 && job.process.isRunning {
            if CheckpointLogs.count(out + "/checkpoint") >= 8 && rankPids(out).count == 4 { break }
            usleep(50_000)
        }
        return job
    }

    /// Waits (at most `seconds`) until no process is left in any namespace of the cluster and
    /// no ntk rank of `out` is alive; returns how long that took, or nil.
    static func waitForNoSurvivors(_ cluster: Cluster, out: String, seconds: Double) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if cluster.allPids().isEmpty && rankPids(out).isEmpty { return Date().timeIntervalSince(start) }
            usleep(50_000)
        }
        return nil
    }

    @Test("a host that dies mid-run (every process in its namespace killed) ends the job non-zero within seconds, and no rank survives")
    func hostDies() throws {
        try Self.requireNamespaces()
        let dir = try Self.inputs(n: 60)
        let cluster = try Cluster(hosts: 2)
        defer { cluster.down() }
        let out = dir + "/run"
        let job = try Self.startSlowRun(cluster, dir: dir, out: out, keepalive: false)
        try #require(job.process.isRunning, "the run ended before the host could be killed: \(job.stderr)")
        let lost = cluster.hosts[1]
        try #require(cluster.pids(lost).count >= 3, "expected orted and 2 ranks in \(lost)")
        let killed = Date()
        let killing = Self.tool(Self.hostsScript, ["kill", lost])
        #expect(killing.status == 0, "\(killing.stderr)")
        let status = job.wait(seconds: 60)
        let seconds = Date().timeIntervalSince(killed)
        let cleared = Self.waitForNoSurvivors(cluster, out: out, seconds: 15)
        Self.note("host killed: mpirun exited with \(status.map(String.init) ?? "nothing (killed by the test)") \(String(format: "%.2f", seconds)) s after the kill; "
                  + "every process gone \(cleared.map { String(format: "%.2f", $0) + " s" } ?? "NOT within 15 s") after that")
        #expect(status != nil && status != 0, "\(job.stderr)")
        #expect(seconds < 30)
        #expect(cleared != nil, "survivors: \(cluster.allPids()) ranks \(Self.rankPids(out))")
        #expect(job.stderr.contains("lost communication") || job.stderr.contains("lost"), "\(job.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/kernel.npy"))
    }

    @Test("a host cut off the network mid-run (its veth down) ends the job non-zero within seconds with TCP keepalive on, and no rank survives on either side")
    func hostCutOff() throws {
        try Self.requireNamespaces()
        let dir = try Self.inputs(n: 60)
        let cluster = try Cluster(hosts: 2)
        defer { cluster.down() }
        let out = dir + "/run"
        let job = try Self.startSlowRun(cluster, dir: dir, out: out, keepalive: true)
        try #require(job.process.isRunning, "the run ended before the link could be cut: \(job.stderr)")
        let lost = cluster.hosts[1]
        try #require(cluster.pids(lost).count >= 3, "expected orted and 2 ranks in \(lost)")
        let cut = Date()
        let down = Self.tool(Self.ip, ["-n", lost, "link", "set", "eth0", "down"])
        try #require(down.status == 0, "\(down.stderr)")
        let status = job.wait(seconds: 60)
        let seconds = Date().timeIntervalSince(cut)
        // The cut-off host cannot be told to stop: its orted must notice on its own that
        // mpirun is gone (keepalive on its side too) and kill its ranks.
        let cleared = Self.waitForNoSurvivors(cluster, out: out, seconds: 20)
        Self.note("link cut: mpirun exited with \(status.map(String.init) ?? "nothing (killed by the test)") \(String(format: "%.2f", seconds)) s after the cut; "
                  + "every process gone (the cut-off host included) \(cleared.map { String(format: "%.2f", $0) + " s" } ?? "NOT within 20 s") after that")
        #expect(status != nil && status != 0, "\(job.stderr)")
        #expect(seconds < 30)
        #expect(cleared != nil, "survivors: \(cluster.allPids()) ranks \(Self.rankPids(out))")
        #expect(!FileManager.default.fileExists(atPath: out + "/kernel.npy"))
    }
}

/// Whether this machine allows the simulated cluster (outside the suite, which names it in
/// its own attribute). Probed once, by `netns-hosts.sh check` (makes and deletes a namespace).
enum MultiHostAvailability {
    static let skipReason: String? = {
        let script = MultiHostTests.hostsScript
        guard FileManager.default.isExecutableFile(atPath: script) else { return "\(script) is missing or not executable" }
        let check = MultiHostTests.tool(script, ["check"], timeout: 30)
        if check.status == 0 { return nil }
        let reason = (check.stdout + check.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
        return reason.isEmpty ? "netns-hosts.sh check failed with status \(check.status)" : reason
    }()

    /// Prints why not (once) when the suite cannot run here.
    static let available: Bool = {
        if let reason = skipReason { MultiHostTests.note("SKIPPED, \(reason)") }
        return skipReason == nil
    }()
}
