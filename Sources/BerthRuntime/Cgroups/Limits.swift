import BerthWire

extension ResourceLimits {
    /// The wire's Resources as the cgroup drivers take them.
    init(_ r: Resources) {
        self.init()
        memoryBytes = r.memoryBytes
        memorySwapBytes = r.memorySwapBytes
        cpuMillis = r.cpuMillis
        cpuShares = r.cpuShares
        pidsLimit = r.pidsLimit
        cpusetCpus = r.cpusetCpus
    }
}
