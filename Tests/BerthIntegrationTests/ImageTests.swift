#if canImport(Glibc)
import Glibc
#endif
import BerthClient
import BerthSystem
import BerthWire
import Synchronization
import Testing

/// The images the tests load and push, built by Tests/Fixtures/images/make-images.py
/// once per test run (with a 24 MiB random layer for the resume test).
let imageFixtures: Result<String, BerthError> = {
    let dir = "/tmp/berth-test-images-\(getpid())"
    do {
        let r = try runProgram(["/usr/bin/python3", repoRoot + "/Tests/Fixtures/images/make-images.py", dir, "24"])
        guard r.status == 0 else { return .failure(BerthError(.internal, "make-images.py failed: \(r.stderr)")) }
        atexit { try? Files.removeTree("/tmp/berth-test-images-\(getpid())") }
        return .success(dir)
    } catch {
        return .failure(error.berthError("make-images.py"))
    }
}()

let hasRegistryTools = Files.exists("/usr/bin/docker-registry") && Files.exists("/usr/bin/skopeo") && Files.exists("/usr/bin/python3")

/// A docker-registry (Debian's package) on 127.0.0.1, with its own config and storage in a
/// temp dir; plain HTTP, or HTTPS with a test CA (made with openssl). `stop()` kills it;
/// `restart()` starts it again on the same port and storage.
final class TestRegistry: Sendable {
    let dir: TempDir
    let port: UInt16
    let tls: Bool
    let pid = Mutex<pid_t>(0)
    var host: String { "127.0.0.1:\(port)" }
    var caFile: String { dir.path + "/ca.pem" }

    init(tls: Bool = false, htpasswd: String? = nil) throws {
        dir = try TempDir("berth-registry")
        self.tls = tls
        port = try registryPort()
        var config = """
        version: 0.1
        log:
          level: error
          accesslog:
            disabled: true
        storage:
          filesystem:
            rootdirectory: \(dir.path)/data
        http:
          addr: 127.0.0.1:\(port)

        """
        if tls {
            let script = """
            set -e
            cd \(dir.path)
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=berth-test-ca -keyout ca.key -out ca.pem 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.pem 2>/dev/null
            """
            let r = try runProgram(["/bin/sh", "-c", script])
            guard r.status == 0 else { dir.remove(); throw BerthError(.internal, "openssl: \(r.stderr)") }
            config += "  tls:\n    certificate: \(dir.path)/server.pem\n    key: \(dir.path)/server.key\n"
        }
        if let htpasswd {
            try Files.writeAtomically(dir.path + "/htpasswd", Array(htpasswd.utf8))
            config += "auth:\n  htpasswd:\n    realm: berth-test\n    path: \(dir.path)/htpasswd\n"
        }
        try Files.writeAtomically(dir.path + "/config.yml", Array(config.utf8))
        do { try start() } catch { dir.remove(); throw error }
    }

    func start() throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir.path + "/registry.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/registry.log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var env = ["PATH=/usr/bin:/bin", "HOME=\(dir.path)"]
        let p = try spawn(["/usr/bin/docker-registry", "serve", dir.path + "/config.yml"], &env, &actions)
        pid.withLock { $0 = p }
        // Ready when it accepts connections (polled; a loaded machine may take a while).
        for _ in 0..<600 {
            if canConnect(port) { return }
            var status: Int32 = 0
            if waitpid(p, &status, WNOHANG) == p {
                pid.withLock { $0 = 0 }
                throw BerthError(.unavailable, "docker-registry exited: \((try? Files.readString(dir.path + "/registry.log")) ?? "")")
            }
            usleep(50_000)
        }
        stop()
        throw BerthError(.unavailable, "docker-registry did not listen within 30 s")
    }

    func stop() {
        let p = pid.withLock { p in defer { p = 0 }; return p }
        guard p > 0 else { return }
        kill(p, SIGCONT)
        kill(p, SIGKILL)
        var status: Int32 = 0
        while waitpid(p, &status, 0) < 0 && errno == EINTR {}
    }

    func pause() { let p = pid.withLock { $0 }; if p > 0 { kill(p, SIGSTOP) } }

    /// skopeo copies an OCI layout's image into this registry.
    func push(layout: String, ref: String, as target: String, all: Bool = false, creds: String? = nil) throws {
        var argv = ["/usr/bin/skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"]
        if let creds { argv.append("--dest-creds=\(creds)") }
        if all { argv.append("--all") }
        argv += ["oci:\(layout):\(ref)", "docker://\(host)/\(target)"]
        let r = try runProgram(argv, env: ["HOME=\(dir.path)", "TMPDIR=\(dir.path)"])
        guard r.status == 0 else { throw BerthError(.internal, "skopeo copy: \(r.stderr)") }
    }

    func remove() {
        stop()
        dir.remove()
    }
}

/// A TCP port free on loopback right now (the kernel's pick for port 0).
func registryPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Errno.current.error("socket") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw Errno.current.error("bind") }
    return UInt16(bigEndian: addr.sin_port)
}

func canConnect(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    return withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// Runs `body` with a registry, always removed.
func withRegistry<T>(tls: Bool = false, htpasswd: String? = nil, _ body: (TestRegistry) async throws -> T) async throws -> T {
    let registry = try TestRegistry(tls: tls, htpasswd: htpasswd)
    defer { registry.remove() }
    return try await body(registry)
}

/// Progress events of a pull, kept for the test to look at.
final class ProgressLog: Sendable {
    let events = Mutex<[ImageProgress]>([])
    func add(_ p: ImageProgress) { events.withLock { $0.append(p) } }
    func of(_ id: String) -> [ImageProgress] { events.withLock { $0.filter { $0.id == id } } }
    var all: [ImageProgress] { events.withLock { $0 } }
}

@Suite("Images (root, real agent)", .enabled(if: isRoot && Files.exists("/usr/bin/python3"), "needs root and python3"), .timeLimit(.minutes(5)))
struct ImageTests {
    @Test("an OCI layout and a docker-archive of 3 layers (whiteout, opaque dir) load, and containers see the right files and defaults")
    func loadArchives() async throws {
        let fixtures = try imageFixtures.get()
        try await withAgent { agent in
            let client = try await agent.connect()
            let oci = try await client.loadImage(path: fixtures + "/oci.tar")
            #expect(oci.map(\.name) == ["test/layers:v1"])
            #expect(oci.first?.layers.count == 3)
            let docker = try agent.cli(["image", "load", fixtures + "/docker.tar"])
            #expect(docker.stdout.contains("Loaded image: test/docker:v1"), "\(docker.stderr)")
            // Same config, so the same id; the layers are stored once.
            #expect(try await client.inspectImage("test/docker:v1").id == oci.first?.id)
            #expect(try await client.info().imageLayers == 3)

            for image in ["test/layers:v1", "test/docker:v1"] {
                let script = "id -u; id -g; pwd; echo $FROM_IMAGE $OVERRIDE; ls /data; ls /data/b; cat /data/c /etc/motd; test -e /data/a || echo no-a"
                var s = spec(["sh", "-c", script], image: image)
                s.env = ["OVERRIDE=run"]
                let r = try await collect(try await client.run(s))
                #expect(r.status.exitCode == 0, "\(r.stderr)")
                #expect(r.stdout == "1000\n1001\n/work\nyes run\nb\nc\nnew\nc3\nlayer3\nno-a\n", "\(image): \(r.stdout)")
            }
            // No command: the image's Cmd; -u overrides its User; its StopSignal is the default.
            let byDefault = try await collect(try await client.run(spec([], image: "test/layers:v1")))
            #expect(byDefault.stdout == "default-cmd\n")
            var asRoot = spec(["id", "-u"], image: "test/layers:v1")
            asRoot.user = User(uid: 0, gid: 0)
            asRoot.userSet = true
            #expect(try await collect(try await client.run(asRoot)).stdout == "0\n")
            let created = try await client.createContainer(spec(["true"], image: "test/layers:v1", rm: false, name: "sig"))
            #expect(created.spec.stopSignal == SIGQUIT)
            try await client.removeContainer("sig")

            // Two containers of one image do not see each other's writes.
            _ = try await client.createContainer(spec(["sh", "-c", "echo one > /tmp/mine; echo one >> /data/c; cat /data/c"], image: "test/layers:v1", rm: false, name: "one"))
            _ = try await client.startContainer("one")
            #expect(try await client.wait("one").exitCode == 0)
            let two = try await collect(try await client.run(spec(["sh", "-c", "test -e /tmp/mine && echo seen; cat /data/c"], image: "test/layers:v1")))
            #expect(two.stdout == "c3\n")

            // A name among others goes; the last name of an image in use needs -f, which
            // removes the name only; the container still runs.
            #expect(try await client.removeImage("test/docker:v1").untagged == ["test/docker:v1"])
            await expectError(.failedPrecondition, reason: "image_in_use") { try await client.removeImage("test/layers:v1") }
            let forced = try await client.removeImage("test/layers:v1", force: true)
            #expect(forced.untagged == ["test/layers:v1"] && forced.deleted.isEmpty)
            _ = try await client.startContainer("one")
            #expect(try await client.wait("one").exitCode == 0)
            #expect(try await client.listImages().isEmpty)
            // The container still holds the image: prune keeps its layers until it goes.
            #expect(try await client.pruneImages().deleted.isEmpty)
            try await client.removeContainer("one")
            let pruned = try await client.pruneImages()
            #expect(pruned.deleted.count == 4, "\(pruned.deleted)")  // the image and its 3 layers
            #expect(try await client.info().imageLayers == 0)
        }
    }

    @Test("malicious, truncated, mismatching and foreign-platform archives are refused, and nothing of them is used")
    func badArchives() async throws {
        let fixtures = try imageFixtures.get()
        try await withAgent { agent in
            let client = try await agent.connect()
            let cases: [(String, BerthError.Code, String)] = [
                ("bad-traversal.tar", .invalidArgument, "escapes the image root"),
                ("bad-absolute.tar", .invalidArgument, "absolute path"),
                ("bad-symlink.tar", .invalidArgument, "outside the image root"),
                ("bad-hardlink.tar", .invalidArgument, "escapes the image root"),
                ("bad-hardlink-dotdot.tar", .invalidArgument, "escapes the image root"),
                ("bad-digest.tar", .invalidArgument, "digest mismatch"),
                ("bad-truncated.tar", .invalidArgument, "truncated"),
                ("bad-platform.tar", .notFound, "linux/amd64"),
            ]
            for (file, code, text) in cases {
                await expectError(code, contains: text) { try await client.loadImage(path: fixtures + "/" + file) }
            }
            #expect(!Files.exists("/etc/evil"))
            #expect(try await client.listImages().isEmpty)
            // Only complete, verified layers were kept (the good base layer); nothing half-written.
            let state = agent.dir.path + "/state/images"
            #expect(try Files.list(state + "/tmp").isEmpty)
            #expect(try Files.list(state + "/by-id").isEmpty)
            _ = try await client.pruneImages()
            #expect(try Files.list(state + "/layers").isEmpty)
            // The agent still serves, and loads a good archive (gzip-compressed as a whole).
            #expect(try await client.loadImage(path: fixtures + "/oci.tar.gz", name: "renamed:v2").map(\.name) == ["renamed:v2"])
        }
    }

    @Test("pull from a registry on loopback over plain HTTP (insecure) and HTTPS with a test CA; errors for 404, an unknown CA, no insecure flag",
          .enabled(if: hasRegistryTools, "needs docker-registry, skopeo"))
    func pullHTTPAndHTTPS() async throws {
        let fixtures = try imageFixtures.get()
        try await withRegistry { plain in
            try plain.push(layout: fixtures + "/oci", ref: "test/layers:v1", as: "test/layers:v1")
            try plain.push(layout: fixtures + "/bad-platform.tar.d", ref: "test/bad:platform", as: "test/arm:v1", all: true)
            try await withAgent(extraArgs: ["--insecure-registry", plain.host]) { agent in
                let pulled = try agent.cli(["image", "pull", "\(plain.host)/test/layers:v1"])
                #expect(pulled.status == 0, "\(pulled.stderr)")
                #expect(pulled.stdout.contains(": downloading"), "\(pulled.stdout)")  // plain lines, not a bar
                #expect(pulled.stdout.contains("\(plain.host)/test/layers:v1 sha256:"))
                let client = try await agent.connect()
                let r = try await collect(try await client.run(spec(["sh", "-c", "ls /data/b; cat /etc/motd"], image: "\(plain.host)/test/layers:v1")))
                #expect(r.stdout == "new\nlayer3\n")
                let image = try await client.inspectImage("\(plain.host)/test/layers:v1")
                #expect(image.digest.hasPrefix("sha256:") && image.config.exposedPorts == ["80/tcp"])
                await expectError(.notFound, reason: "image_not_found") {
                    try await client.pullImage(PullImageRequest(reference: "\(plain.host)/test/nothere:v1"))
                }
                await expectError(.notFound, reason: "platform_not_found") {
                    try await client.pullImage(PullImageRequest(reference: "\(plain.host)/test/arm:v1"))
                }
                // run pulls a missing image on demand (the CLI, like docker).
                _ = try await client.removeImage("\(plain.host)/test/layers:v1")
                let run = try agent.cli(["run", "--rm", "\(plain.host)/test/layers:v1", "cat", "/etc/motd"])
                #expect(run.status == 0 && run.stdout == "layer3\n", "\(run.stderr)")
                #expect(run.stderr.contains("Unable to find image"))
            }
            // Not named insecure: HTTPS to a plain-HTTP server fails clearly.
            try await withAgent { agent in
                let client = try await agent.connect()
                await expectError(.unavailable, reason: "registry_tls") {
                    try await client.pullImage(PullImageRequest(reference: "\(plain.host)/test/layers:v1"))
                }
            }
        }
        // HTTPS with a test CA and basic authentication (htpasswd, bcrypt from python3's crypt).
        let hash = try runProgram(["/usr/bin/python3", "-W", "ignore", "-c",
                                   "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))"]).stdout
        try await withRegistry(tls: true, htpasswd: "tester:" + hash) { secure in
            try secure.push(layout: fixtures + "/oci", ref: "test/layers:v1", as: "test/layers:v1", creds: "tester:s3cret")
            try await withAgent(extraArgs: ["--registry-ca", "\(secure.host)=\(secure.caFile)"]) { agent in
                let client = try await agent.connect()
                await expectError(.unauthenticated, reason: "registry_unauthorized") {
                    try await client.pullImage(PullImageRequest(reference: "\(secure.host)/test/layers:v1"))
                }
                await expectError(.unauthenticated, reason: "registry_unauthorized") {
                    try await client.pullImage(PullImageRequest(reference: "\(secure.host)/test/layers:v1", username: "tester", password: "wrong"))
                }
                let cli = try agent.cli(["image", "pull", "-q", "--username", "tester", "--password-stdin", "\(secure.host)/test/layers:v1"], stdin: "s3cret\n")
                #expect(cli.status == 0, "\(cli.stderr)")
                let image = try await client.inspectImage("\(secure.host)/test/layers:v1")
                #expect(image.layers.count == 3)
                let r = try await collect(try await client.run(spec(["cat", "/data/c"], image: "\(secure.host)/test/layers:v1")))
                #expect(r.stdout == "c3\n")
            }
            // Without the CA, the certificate is not trusted.
            try await withAgent { agent in
                let client = try await agent.connect()
                await expectError(.unavailable, reason: "registry_tls") {
                    try await client.pullImage(PullImageRequest(reference: "\(secure.host)/test/layers:v1"))
                }
                #expect(try await client.listImages().isEmpty)
            }
        }
    }

    @Test("a registry answering 500, or 401 without a usable challenge, is a clear error and the agent keeps serving")
    func registryErrors() async throws {
        // A fake registry (python3's http.server on loopback): every request gets the status
        // its path names, /v2/five/… a 500 and /v2/auth/… a 401 with a challenge it cannot meet.
        let dir = try TempDir("berth-fake-registry")
        defer { dir.remove() }
        let port = try registryPort()
        let script = """
        import http.server
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/v2/five/"):
                    self.send_response(500); body = b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}'
                else:
                    self.send_response(401); self.send_header("WWW-Authenticate", 'Negotiate'); body = b""
                self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", \(port)), H).serve_forever()
        """
        try Files.writeAtomically(dir.path + "/fake.py", Array(script.utf8))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir.path + "/log", O_WRONLY | O_CREAT, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir.path + "/log", O_WRONLY | O_CREAT, 0o600)
        var env = ["PATH=/usr/bin:/bin"]
        let pid = try spawn(["/usr/bin/python3", dir.path + "/fake.py"], &env, &actions)
        defer {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        for _ in 0..<600 {
            if canConnect(port) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        try await withAgent(extraArgs: ["--insecure-registry", "127.0.0.1:\(port)"]) { agent in
            let client = try await agent.connect()
            await expectError(.unavailable, reason: "registry_unavailable", contains: "disk on fire") {
                try await client.pullImage(PullImageRequest(reference: "127.0.0.1:\(port)/five/x:v1"))
            }
            await expectError(.unauthenticated, reason: "registry_unauthorized") {
                try await client.pullImage(PullImageRequest(reference: "127.0.0.1:\(port)/auth/x:v1"))
            }
            #expect(try await client.listImages().isEmpty)
            #expect(try await client.info().imageLayers == 0)
        }
    }

    @Test("a pull interrupted by the registry stopping resumes where it stopped; two pulls of one layer download it once; a hung registry times out",
          .enabled(if: hasRegistryTools, "needs docker-registry, skopeo"))
    func resumeAndSingleDownload() async throws {
        let fixtures = try imageFixtures.get()
        try await withRegistry { registry in
            try registry.push(layout: fixtures + "/big", ref: "test/big:v1", as: "test/big:v1")
            // 24 MiB at 2 MB/s: long enough to stop the registry part-way on any machine.
            try await withAgent(extraArgs: ["--insecure-registry", registry.host, "--registry-max-speed", "2000000",
                                            "--registry-timeout", "3"]) { agent in
                let client = try await agent.connect()
                let ref = "\(registry.host)/test/big:v1"
                let first = ProgressLog()
                let pull = Task { try await client.pullImage(PullImageRequest(reference: ref)) { first.add($0) } }
                // Wait (polling, generous bound) until the big layer is part-way.
                var big = ""
                for _ in 0..<1200 {
                    if let p = first.all.last(where: { $0.status == "downloading" && $0.total > 20 << 20 && $0.current > 2 << 20 }) {
                        big = p.id
                        break
                    }
                    // Not usleep: the pull's progress is consumed on the (two-thread) concurrency pool.
                    try await Task.sleep(nanoseconds: 50_000_000)
                }
                #expect(!big.isEmpty, "the big layer never got past 2 MiB: \(first.all.suffix(3))")
                registry.stop()
                await expectError(.unavailable) { try await pull.value }
                #expect(try await client.listImages().isEmpty)

                try registry.start()
                let a = ProgressLog(), b = ProgressLog()
                async let pa = client.pullImage(PullImageRequest(reference: ref)) { a.add($0) }
                async let pb = client.pullImage(PullImageRequest(reference: ref)) { b.add($0) }
                let (ia, ib) = try await (pa, pb)
                #expect(ia.id == ib.id)
                // Exactly one of them downloaded the big layer, from where the first pull stopped.
                let downloads = [a, b].filter { log in log.of(big).contains { $0.status == "downloading" } }
                #expect(downloads.count == 1)
                if let resumed = downloads.first?.of(big).first(where: { $0.status == "downloading" }) {
                    #expect(resumed.current > 0, "the download started over")
                }
                let r = try await collect(try await client.run(spec(["sh", "-c", "wc -c < /big"], image: ref)))
                #expect(r.stdout.trimmingCharacters() == "\(24 << 20)")

                // A registry that accepts the connection and then says nothing.
                _ = try await client.removeImage(ref)
                _ = try await client.pruneImages()
                registry.pause()
                await expectError(.deadlineExceeded, reason: "registry_timeout") {
                    try await client.pullImage(PullImageRequest(reference: ref))
                }
            }
        }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.last, c == "\n" || c == " " { s = s.dropLast() }
        while let c = s.first, c == " " { s = s.dropFirst() }
        return String(s)
    }
}
