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

/**
 * CPU seconds this machine's virtual CPUs have waited for the hypervisor so far ("steal", the
 * eighth number on the first line of /proc/stat, summed over all CPUs). On a shared virtual
 * machine it is what makes latency tails jump from one run to the next, so a run reports it.
 */
export function stealSeconds(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
    const f = line.trim().split(/\s+/);
    return f[0] === "cpu" && f.length > 8 ? Number(f[8]) / TICKS : undefined;
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
