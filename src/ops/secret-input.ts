// A secret typed at a terminal (echo off, asked twice) or piped on stdin: never argv or env.
import { stdin, stderr } from "node:process";

async function readAll(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** One line typed without echo (raw mode): Enter ends it, Ctrl-C aborts, Backspace deletes. */
function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    stderr.write(prompt);
    let text = "";
    stdin.setRawMode(true);
    stdin.resume();
    const done = (f: () => void) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      stderr.write("\n");
      f();
    };
    const onData = (b: Buffer) => {
      for (const ch of b.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done(() => resolve(text));
        if (ch === "\u0003" || ch === "\u0004") return done(() => reject(new Error("aborted")));
        if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
        else text += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** From a terminal: asked twice, must match. From a pipe: all of stdin, one final newline dropped. */
export async function readSecret(what: string): Promise<string> {
  if (!stdin.isTTY) return (await readAll()).replace(/\r?\n$/, "");
  const a = await promptHidden(`${what}: `);
  const b = await promptHidden(`${what} again: `);
  if (a !== b) throw new Error("the two entries differ");
  return a;
}
