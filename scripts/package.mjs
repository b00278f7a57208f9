// Release packaging from the executables in dist/ (build them first with `npm run compile`).
// Writes dist/release/:
//   midge-<version>-<target>.tar.gz   (linux, darwin: midge, config.toml, README.md)
//   midge-<version>-windows-x64.zip   (midge.exe, config.toml, README.md)
//   SHA256SUMS                         (sha256sum format, every archive and .deb)
//   midge.rb                           Homebrew formula (macOS and Linux, x64 and arm64)
//   winget/manifests/m/Midge/Midge/<version>/*.yaml   winget manifest (portable zip)
//   midge_<version>_amd64.deb, midge_<version>_arm64.deb   with a systemd unit running
//                                      `midge serve` as the unprivileged system user "midge"
//   install.sh                         installer for Linux and macOS (checks the SHA-256)
// Usage: node scripts/package.mjs [--base-url URL]
//   URL is where the archives will be published (the formula, manifest and install.sh download
//   from it); default $MIDGE_RELEASE_URL, else a placeholder to replace before publishing.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateRawSync } from "node:zlib";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const version = pkg.version;
const args = process.argv.slice(2);
const baseUrl =
  (args[args.indexOf("--base-url") + 1] && args.includes("--base-url")
    ? args[args.indexOf("--base-url") + 1]
    : process.env.MIDGE_RELEASE_URL ?? `https://downloads.example.com/midge/v${version}`)
    .replace(/\/$/, "");
const TARGETS = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64", "windows-x64"];
const dist = join(root, "dist");
const out = join(dist, "release");
const description = "Fast, single-file MQTT 3.1/3.1.1/5.0 broker with pub/sub/rr client tools";
const homepage = process.env.MIDGE_HOMEPAGE ?? baseUrl;

const exe = (t) => join(dist, `midge-${t}${t.startsWith("windows") ? ".exe" : ""}`);
const missing = TARGETS.filter((t) => !existsSync(exe(t)));
if (missing.length) {
  console.error(`missing ${missing.map(exe).join(", ")}: run npm run compile first`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

function sh(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: ["ignore", "inherit", "inherit"], ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (${r.status})`);
}
const sha256 = (file) => createHash("sha256").update(readFileSync(file)).digest("hex");
const sums = new Map();

// --- archives ------------------------------------------------------------------------------------
const docs = [["config.toml", join(root, "config.toml")], ["README.md", join(root, "README.md")]];
for (const t of TARGETS) {
  const stage = join(out, `.stage-${t}`);
  mkdirSync(stage, { recursive: true });
  const name = t.startsWith("windows") ? "midge.exe" : "midge";
  copyFileSync(exe(t), join(stage, name));
  chmodSync(join(stage, name), 0o755);
  for (const [n, src] of docs) copyFileSync(src, join(stage, n));
  const base = `midge-${version}-${t}`;
  if (t.startsWith("windows")) {
    const file = join(out, `${base}.zip`);
    writeZip(file, [name, ...docs.map(([n]) => n)].map((n) => [n, join(stage, n)]));
    sums.set(`${base}.zip`, sha256(file));
  } else {
    const file = join(out, `${base}.tar.gz`);
    sh("tar", [
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "-czf",
      file,
      "-C",
      stage,
      name,
      ...docs.map(([n]) => n),
    ]);
    sums.set(`${base}.tar.gz`, sha256(file));
  }
  rmSync(stage, { recursive: true, force: true });
}

// --- .deb with a systemd unit -------------------------------------------------------------------
const UNIT = `[Unit]
Description=Midge MQTT broker
Documentation=man:mosquitto(8)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=midge
Group=midge
ExecStart=/usr/bin/midge serve -c /etc/midge/config.toml
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory=/var/lib/midge
StateDirectory=midge
Restart=on-failure
RestartSec=2
LimitNOFILE=1048576
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectControlGroups=true
RestrictSUIDSGID=true
ReadWritePaths=/var/lib/midge

[Install]
WantedBy=multi-user.target
`;
for (const [t, arch] of [["linux-x64", "amd64"], ["linux-arm64", "arm64"]]) {
  const stage = join(out, `.deb-${arch}`);
  const p = (rel) => join(stage, rel);
  for (const d of ["DEBIAN", "usr/bin", "etc/midge", "lib/systemd/system", "usr/share/doc/midge"]) {
    mkdirSync(p(d), { recursive: true });
  }
  copyFileSync(exe(t), p("usr/bin/midge"));
  chmodSync(p("usr/bin/midge"), 0o755);
  copyFileSync(join(root, "config.toml"), p("etc/midge/config.toml"));
  copyFileSync(join(root, "README.md"), p("usr/share/doc/midge/README.md"));
  writeFileSync(p("lib/systemd/system/midge.service"), UNIT);
  const size = Math.ceil(statSync(exe(t)).size / 1024) + 64;
  writeFileSync(
    p("DEBIAN/control"),
    `Package: midge
Version: ${version}
Section: net
Priority: optional
Architecture: ${arch}
Maintainer: Midge maintainers <midge@localhost>
Installed-Size: ${size}
Depends: adduser
Provides: mqtt-broker
Homepage: ${homepage}
Description: ${description}
 Midge is an MQTT 3.1, 3.1.1 and 5.0 broker in one executable, with mosquitto-compatible
 pub, sub and rr client commands. The midge service runs "midge serve" as the unprivileged
 system user midge with /etc/midge/config.toml.
`,
  );
  writeFileSync(p("DEBIAN/conffiles"), "/etc/midge/config.toml\n");
  writeFileSync(
    p("DEBIAN/postinst"),
    `#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd midge >/dev/null; then
    adduser --system --group --home /var/lib/midge --no-create-home --quiet midge
  fi
  mkdir -p /var/lib/midge
  chown midge:midge /var/lib/midge
  chmod 750 /var/lib/midge
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable midge.service >/dev/null || true
    systemctl restart midge.service >/dev/null || true
  fi
fi
`,
  );
  writeFileSync(
    p("DEBIAN/prerm"),
    `#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop midge.service >/dev/null || true
  systemctl disable midge.service >/dev/null || true
fi
`,
  );
  writeFileSync(
    p("DEBIAN/postrm"),
    `#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /var/lib/midge
  if getent passwd midge >/dev/null; then deluser --quiet --system midge >/dev/null || true; fi
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi
`,
  );
  for (const s of ["postinst", "prerm", "postrm"]) chmodSync(p(`DEBIAN/${s}`), 0o755);
  const file = join(out, `midge_${version}_${arch}.deb`);
  sh("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", stage, file], { stdio: "ignore" });
  sums.set(`midge_${version}_${arch}.deb`, sha256(file));
  rmSync(stage, { recursive: true, force: true });
}

// --- SHA256SUMS -------------------------------------------------------------------------------
writeFileSync(
  join(out, "SHA256SUMS"),
  [...sums].map(([f, h]) => `${h}  ${f}\n`).join(""),
);

// --- Homebrew formula -------------------------------------------------------------------------
const tgz = (t) => `midge-${version}-${t}.tar.gz`;
const brewBlock = (t) => `      url "${baseUrl}/${tgz(t)}"\n      sha256 "${sums.get(tgz(t))}"`;
writeFileSync(
  join(out, "midge.rb"),
  `# Homebrew formula for Midge ${version} (generated by scripts/package.mjs).
class Midge < Formula
  desc "${description}"
  homepage "${homepage}"
  version "${version}"
  license "${pkg.license ?? "MIT"}"

  on_macos do
    on_arm do
${brewBlock("darwin-arm64")}
    end
    on_intel do
${brewBlock("darwin-x64")}
    end
  end

  on_linux do
    on_arm do
${brewBlock("linux-arm64")}
    end
    on_intel do
${brewBlock("linux-x64")}
    end
  end

  def install
    bin.install "midge"
    (etc/"midge").install "config.toml" unless (etc/"midge/config.toml").exist?
    doc.install "README.md"
  end

  def post_install
    (var/"midge").mkpath
  end

  service do
    run [opt_bin/"midge", "serve", "-c", etc/"midge/config.toml"]
    working_dir var/"midge"
    keep_alive true
    log_path var/"log/midge.log"
    error_log_path var/"log/midge.log"
  end

  test do
    assert_match "midge #{version}", shell_output("#{bin}/midge --version")
    port = free_port
    pid = spawn bin/"midge", "serve", "-p", port.to_s
    sleep 1
    system bin/"midge", "pub", "-p", port.to_s, "-t", "brew/test", "-m", "ok"
  ensure
    Process.kill("TERM", pid) if pid
  end
end
`,
);

// --- winget manifest (portable executable in a zip) ------------------------------------------
const wingetDir = join(out, "winget", "manifests", "m", "Midge", "Midge", version);
mkdirSync(wingetDir, { recursive: true });
const zipName = `midge-${version}-windows-x64.zip`;
const schema = (kind) =>
  `# yaml-language-server: $schema=https://aka.ms/winget-manifest.${kind}.1.6.0.schema.json\n`;
writeFileSync(
  join(wingetDir, "Midge.Midge.yaml"),
  `${schema("version")}PackageIdentifier: Midge.Midge
PackageVersion: ${version}
DefaultLocale: en-US
ManifestType: version
ManifestVersion: 1.6.0
`,
);
writeFileSync(
  join(wingetDir, "Midge.Midge.installer.yaml"),
  `${schema("installer")}PackageIdentifier: Midge.Midge
PackageVersion: ${version}
InstallerType: zip
NestedInstallerType: portable
NestedInstallerFiles:
  - RelativeFilePath: midge.exe
    PortableCommandAlias: midge
Commands:
  - midge
Installers:
  - Architecture: x64
    InstallerUrl: ${baseUrl}/${zipName}
    InstallerSha256: ${sums.get(zipName).toUpperCase()}
ManifestType: installer
ManifestVersion: 1.6.0
`,
);
writeFileSync(
  join(wingetDir, "Midge.Midge.locale.en-US.yaml"),
  `${schema("defaultLocale")}PackageIdentifier: Midge.Midge
PackageVersion: ${version}
PackageLocale: en-US
Publisher: Midge
PackageName: Midge
License: ${pkg.license ?? "MIT"}
ShortDescription: ${description}
Moniker: midge
Tags:
  - mqtt
  - broker
  - iot
ManifestType: defaultLocale
ManifestVersion: 1.6.0
`,
);

// --- install.sh -------------------------------------------------------------------------------
writeFileSync(
  join(out, "install.sh"),
  `#!/bin/sh
# Installs Midge ${version} on Linux or macOS (x64, arm64): downloads the archive for this
# machine, checks its SHA-256 against the sum recorded here, and puts "midge" in
# $PREFIX/bin (default /usr/local, or ~/.local when /usr/local/bin is not writable).
#   curl -fsSL ${baseUrl}/install.sh | sh
# Environment: PREFIX, MIDGE_BASE_URL (where the archives are), MIDGE_ARCHIVE_DIR (install from
# a local directory holding the archives instead of downloading).
set -eu
version="${version}"
base="\${MIDGE_BASE_URL:-${baseUrl}}"
case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "midge: unsupported system $(uname -s); download a release archive by hand" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "midge: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
archive="midge-$version-$os-$arch.tar.gz"
case "$archive" in
${
    TARGETS.filter((t) => !t.startsWith("windows")).map((t) =>
      `  ${tgz(t)}) sum=${sums.get(tgz(t))} ;;`
    ).join("\n")
  }
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "\${MIDGE_ARCHIVE_DIR:-}" ]; then
  cp "$MIDGE_ARCHIVE_DIR/$archive" "$tmp/$archive"
elif command -v curl >/dev/null 2>&1; then
  curl -fsSL -o "$tmp/$archive" "$base/$archive"
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$tmp/$archive" "$base/$archive"
else
  echo "midge: need curl or wget" >&2
  exit 1
fi
if command -v sha256sum >/dev/null 2>&1; then
  got=$(sha256sum "$tmp/$archive" | cut -d' ' -f1)
else
  got=$(shasum -a 256 "$tmp/$archive" | cut -d' ' -f1)
fi
if [ "$got" != "$sum" ]; then
  echo "midge: checksum mismatch for $archive (expected $sum, got $got)" >&2
  exit 1
fi
tar -xzf "$tmp/$archive" -C "$tmp"
prefix="\${PREFIX:-/usr/local}"
if [ -z "\${PREFIX:-}" ] && ! { mkdir -p "$prefix/bin" 2>/dev/null && [ -w "$prefix/bin" ]; }; then
  prefix="$HOME/.local"
fi
mkdir -p "$prefix/bin"
install -m 755 "$tmp/midge" "$prefix/bin/midge" 2>/dev/null ||
  { cp "$tmp/midge" "$prefix/bin/midge" && chmod 755 "$prefix/bin/midge"; }
if [ "$os" = darwin ]; then xattr -d com.apple.quarantine "$prefix/bin/midge" 2>/dev/null || true; fi
echo "installed $("$prefix/bin/midge" --version) to $prefix/bin/midge"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "add $prefix/bin to your PATH" ;; esac
`,
);
chmodSync(join(out, "install.sh"), 0o755);

for (const f of [...sums.keys(), "SHA256SUMS", "midge.rb", "install.sh", "winget/"]) {
  const path = join(out, f);
  const size = f.endsWith("/") ? "" : ` ${(statSync(path).size / 1048576).toFixed(1)} MB`;
  console.log(`${path}${size}`);
}

/** A .zip (deflate) of [name, path] entries, written with node:zlib only. */
function writeZip(file, entries) {
  const locals = [];
  const central = [];
  let offset = 0;
  const now = new Date();
  const dosTime = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const dosDate = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  for (const [name, path] of entries) {
    const data = readFileSync(path);
    const packed = deflateRawSync(data, { level: 6 });
    const crc = crc32(data);
    const nameBytes = Buffer.from(name, "utf8");
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(8, 8); // deflate
    local.writeUInt16LE(dosTime, 10);
    local.writeUInt16LE(dosDate, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    locals.push(local, nameBytes, packed);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(0x031e, 4); // made by Unix, spec 3.0 (keeps the mode bits below)
    c.writeUInt16LE(20, 6);
    c.writeUInt16LE(0x0800, 8);
    c.writeUInt16LE(8, 10);
    c.writeUInt16LE(dosTime, 12);
    c.writeUInt16LE(dosDate, 14);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(packed.length, 20);
    c.writeUInt32LE(data.length, 24);
    c.writeUInt16LE(nameBytes.length, 28);
    c.writeUInt32LE(((name.endsWith(".exe") ? 0o100755 : 0o100644) << 16) >>> 0, 38);
    c.writeUInt32LE(offset, 42);
    central.push(c, nameBytes);
    offset += 30 + nameBytes.length + packed.length;
  }
  const centralSize = central.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  writeFileSync(file, Buffer.concat([...locals, ...central, end]));
}

function crc32(buf) {
  let table = crc32.table;
  if (!table) {
    table = crc32.table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
