import ServiceSupport

// Before anything can start a thread: every thread started later inherits the blocked signals, and only
// the signal thread takes them (C-LIBRARIES.md, "Signals").
SignalHandling.blockTerminationSignals()
InventoryRPCCommand.main()
