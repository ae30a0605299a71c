// Public surface of the PostgreSQL controller.
export { findBinDir, pgTool, BinDirError, type PgBins } from "./binaries.ts";
export { runTool, runToolOk, secret, ToolError, type Secret, type ToolResult, type ToolSpec } from "./exec.ts";
export { inspectDataDir, fixDataDirOwnership, readPostmasterPid, parseControlData, type DataDirInfo, type ControlData, type PostmasterPid } from "./datadir.ts";
export { renderPgherdConf, buildConninfo, withIncludeLine, confValue, ConfError, MANAGED_KEYS, PGHERD_CONF, type PgherdConfParams, type ConninfoParams } from "./pgconf.ts";
export { renderHbaBlock, renderIdentBlock, mergeManagedBlock, HbaError, type HbaParams } from "./hba.ts";
export { writeManagedConfig, setStandbySignal, type ManagedConfig } from "./managed-config.ts";
export { initdb, start, stop, restart, reload, status, PgCtlError, type PgNode, type StopMode, type PgCtlErrorKind } from "./ctl.ts";
export { basebackup, notCopied, swapDataDir, swapProblem, removeOldCopies, removeUnfinishedClone, cloneDirFor, parseProgress, BasebackupError, type BasebackupOptions, type BasebackupProgress } from "./basebackup.ts";
export { openDb, openLocalDb, DbTimeoutError, sqlState, type Db, type DbOptions } from "./sql.ts";
export { probe, pendingRestart, type Probe, type ProbeUp, type ReplicationInfo, type WalReceiverInfo } from "./probe.ts";
export { ensureRoles, scramVerifier, type RoleSpec } from "./roles.ts";
export { ensureSlot, dropSlot, listSlots, slotNameFor, type SlotInfo } from "./slots.ts";
export { promote, syncCandidatesInForce, syncNamesBarrier, syncNamesBeforePromotion, type PromoteResult } from "./promote.ts";
export { generatePassword, writePassfile, renderPassfile, type PassfileEntry } from "./passwords.ts";
export { lsnToBigInt, bigIntToLsn, lsnDiff, lsnCompare, isLsn } from "./lsn.ts";
export { lookupOsUser, isRoot, type OsUser } from "./users.ts";
export { rewind, RewindError, type RewindOptions } from "./rewind.ts";
export { leftoverProcesses, killLeftovers, killLeftoversAndWait, clearStaleLocks } from "./orphans.ts";
