#if INVENTORY_CONTROL_UNSAFE_CLAIM
/// CONTROL BUILD ONLY (`-Xswiftc -DINVENTORY_CONTROL_UNSAFE_CLAIM`): the store claims seats with
/// `Storage/Control/unsafe_claim.sql`, a claim without its availability condition, to show that the
/// concurrency tests catch a double hold (`StorageControlTests`, `CoreControlTests`, `faults/run.sh
/// --control`). This file is the only place the flag is read. Being a member of the type itself, this
/// `claimSQL` takes precedence over the production default of `ClaimStatement` (InventoryStore.swift).
/// Never defined in a release build.
extension InventoryStore {
    static var claimSQL: String { String(decoding: PackageResources.unsafe_claim_sql, as: UTF8.self) }
}
#endif
