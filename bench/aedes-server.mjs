// Aedes (npm `aedes`, in-memory persistence) on a plain node:net server with TCP_NODELAY, for
// bench/compare.mjs. Usage: node bench/aedes-server.mjs PORT. Prints "listening PORT" once bound.
import { createServer } from "node:net";
import { Aedes } from "aedes";

const port = Number(process.argv[2] ?? 1883);
const aedes = await Aedes.createBroker();
const server = createServer({ noDelay: true }, aedes.handle);
server.listen(port, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
const stop = () => server.close(() => aedes.close(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
