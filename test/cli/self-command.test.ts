// src/self.ts: the argv that runs this executable again (archive_command, `pgherd demo`). After an
// upgrade replaced the binary the kernel names the running image "<path> (deleted)": the path
// written into archive_command must be the installed one (review).
import { expect, test } from "bun:test";
import { liveExecPath, selfCommand } from "../../src/self.ts";

test("the running image's path without the kernel's ' (deleted)' suffix", () => {
  expect(liveExecPath("/usr/local/bin/pgherd (deleted)")).toBe("/usr/local/bin/pgherd");
  expect(liveExecPath("/usr/local/bin/pgherd")).toBe("/usr/local/bin/pgherd");
  expect(liveExecPath("/opt/my (deleted) dir/pgherd")).toBe("/opt/my (deleted) dir/pgherd");
  expect(selfCommand().argv[0]).toBe(process.execPath);
});
