// berth-monitor: see docs/monitor.md. Placeholder until the monitor lands.
int main(void) { return 0; }
