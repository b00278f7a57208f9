/** Another process's CPU time and memory, from Linux's /proc (undefined elsewhere). */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux build in use). */
const TICKS = 100;

/** User + system CPU seconds used so far by `pid` (its threads included). */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/** A field of /proc/<pid>/status in KB (VmRSS: resident memory now; VmHWM: its peak). */
export function statusKb(pid: number, field = "VmRSS"): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(s);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
