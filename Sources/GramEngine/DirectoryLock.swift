import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One run's exclusive claim on a directory (an output or checkpoint directory).
///
/// The claim is an `flock` on `DIR/.ntk-lock`, a file holding the holder's identity (pid,
/// host, command, start time), so that a second run refuses at once (73) and names the
/// first. The kernel releases the lock when the process ends, however it ends, so a killed
/// run leaves no stale claim; the file itself is removed by `release()`. Because the file
/// may be removed and created again between one run's `open` and its `flock`, a run checks
/// after locking that the path still names the file it locked, and retries otherwise.
/// On NFS, Linux implements `flock` with POSIX byte-range locks, which the server sees.
public final class DirectoryLock {
    public static let fileName = ".ntk-lock"

    public let path: String
    private var fd: Int32 = -1

    /// Claims `directory` (which must exist). Throws `cannotCreate` (73) when another run
    /// holds it or the lock file cannot be created.
    public init(directory: String, role: String) throws(NTKError) {
        path = directory + "/" + Self.fileName
        for _ in 0..<20 {
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard descriptor >= 0 else {
                throw NTKError(.cannotCreate, "cannot create the lock file \(path) of \(role) \(directory): \(SystemError.text(errno))")
            }
            if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                if code == EWOULDBLOCK {
                    let holder = Self.holder(descriptor)
                    close(descriptor)
                    throw NTKError(.cannotCreate, "\(role) \(directory) is in use by another ntk run (\(holder)); wait for it to finish, or choose another directory")
                }
                // A file system without locks (ENOLCK, EOPNOTSUPP): run unguarded, but say so.
                Report.warning("cannot lock \(role) \(directory) (\(SystemError.text(code))): concurrent runs into it are not detected")
            }
            var locked = stat(), named = stat()
            if fstat(descriptor, &locked) == 0 && stat(path, &named) == 0 && locked.st_ino == named.st_ino && locked.st_dev == named.st_dev {
                fd = descriptor
                break
            }
            close(descriptor)  // the file was replaced after we opened it: try again
        }
        guard fd >= 0 else { throw NTKError(.cannotCreate, "cannot lock \(role) \(directory): its lock file keeps changing") }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let command = CommandLine.arguments.dropFirst().first ?? ""
        let identity = "pid \(getpid()) on \(String(cString: host)), ntk \(command), since \(ISO8601DateFormatter().string(from: Date()))\n"
        _ = ftruncate(fd, 0)
        _ = identity.withCString { pwrite(fd, $0, strlen($0), 0) }
    }

    /// Removes the lock file and releases the claim. Idempotent.
    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { release() }

    /// The identity written by the holder, or a generic phrase.
    private static func holder(_ descriptor: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        let text = count > 0 ? String(decoding: buffer.prefix(count), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
        return text.isEmpty ? "holder unknown" : text
    }
}

/// Text of a C library error code.
enum SystemError {
    static func text(_ code: Int32) -> String { String(cString: strerror(code)) }
}
