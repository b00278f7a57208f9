/**
 * A small strftime for log timestamps (Mosquitto's `log_timestamp_format`), local time:
 * %Y %m %d %H %M %S %y %b %a %j %z %s %F %T %e %%. Other conversions are copied as written.
 */

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** Formats `ms` (milliseconds since the epoch) with `format`, in the local time zone. */
export function strftime(format: string, ms: number): string {
  const d = new Date(ms);
  return format.replace(/%([%A-Za-z])/g, (all, c: string) => {
    switch (c) {
      case "Y":
        return String(d.getFullYear());
      case "y":
        return pad(d.getFullYear() % 100);
      case "m":
        return pad(d.getMonth() + 1);
      case "d":
        return pad(d.getDate());
      case "e":
        return String(d.getDate()).padStart(2, " ");
      case "H":
        return pad(d.getHours());
      case "M":
        return pad(d.getMinutes());
      case "S":
        return pad(d.getSeconds());
      case "b":
        return MONTHS[d.getMonth()];
      case "a":
        return DAYS[d.getDay()];
      case "j": {
        const start = new Date(d.getFullYear(), 0, 1);
        return pad(Math.floor((d.getTime() - start.getTime()) / 86400000) + 1, 3);
      }
      case "z": {
        const off = -d.getTimezoneOffset();
        const sign = off < 0 ? "-" : "+";
        return `${sign}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
      }
      case "s":
        return String(Math.floor(ms / 1000));
      case "F":
        return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      case "T":
        return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      case "%":
        return "%";
      default:
        return all;
    }
  });
}
