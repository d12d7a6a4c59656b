#!/usr/bin/env node
// Builds a JavaScript (or TypeScript) weir stage into a WebAssembly component.
//
//   node componentize.mjs ENTRY WIT_DIR OUT.wasm
//
// ENTRY is the stage's module (stage.js), or its project directory (the
// file named by package.json's "main", else stage.js, stage.ts, index.js).
// WIT_DIR is weir's sdk/wit. The tools are found in the project's own
// node_modules first, then in $WEIR_JS_TOOLCHAIN/node_modules (default
// ~/.cache/weir/js-toolchain, where `./dev setup` installs them).
//
// Why each step:
// 1. esbuild bundles the stage, weir-stage and any npm packages it imports
//    into one ES module: componentize-js evaluates the entry inside its own
//    engine, which resolves only relative files next to it, not packages.
//    The bundle takes weir-stage's "weir-component" files, which call weir's
//    host; natively (node --test) the same imports get test doubles.
// 2. A line table is appended to the bundle, so that an error's line in a
//    dead letter is the line of the file the author wrote, not of the bundle.
// 3. componentize-js with the features weir does not provide turned off:
//    `http` and `fetch-event` (wasi:http). stdio (console output), random
//    (Math.random) and clocks (Date.now: frozen at 0 unless the pipeline
//    grants a clock) stay.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { basename, dirname, join, resolve, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SDK_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DISABLED_FEATURES = ['http', 'fetch-event'];
const BUNDLE_NAME = 'stage.bundle.js';

// A path as the user would type it: relative below the current directory,
// absolute elsewhere.
function shown(path) {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

const [entryArg, witArg, outArg] = process.argv.slice(2);
if (!entryArg || !witArg || !outArg) {
  fail('usage: node componentize.mjs ENTRY|PROJECT_DIR WIT_DIR OUT.wasm');
}

function findEntry(path) {
  const full = resolve(path);
  if (!existsSync(full)) fail(`${path} does not exist`);
  if (!statSync(full).isDirectory()) return full;
  const pkgPath = join(full, 'package.json');
  if (existsSync(pkgPath)) {
    const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
    if (pkg.main && existsSync(join(full, pkg.main))) return join(full, pkg.main);
  }
  for (const name of ['stage.js', 'stage.ts', 'stage.mjs', 'index.js', 'index.ts', 'src/stage.js', 'src/stage.ts']) {
    if (existsSync(join(full, name))) return join(full, name);
  }
  fail(`no stage module in ${path}: expected package.json "main", stage.js or stage.ts`);
}

const entry = findEntry(entryArg);
const projectDir = statSync(resolve(entryArg)).isDirectory() ? resolve(entryArg) : dirname(entry);
const witDir = resolve(witArg);
if (!existsSync(join(witDir, 'stage.wit'))) fail(`${witArg} has no stage.wit: give weir's sdk/wit directory`);
const out = resolve(outArg);

const toolchain = resolve(process.env.WEIR_JS_TOOLCHAIN || join(homedir(), '.cache', 'weir', 'js-toolchain'));
const INSTALL =
  `install them with \`./dev setup\` in a weir checkout, or: ` +
  `mkdir -p ${toolchain} && cd ${toolchain} && npm init -y && npm install --save-exact @bytecodealliance/componentize-js@0.23.0 esbuild@0.28.2`;

// The package's ES module entry (componentize-js has only an "import"
// export, which require.resolve cannot see).
function entryOf(dir) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const exp = typeof pkg.exports === 'string' ? pkg.exports : (pkg.exports?.['.'] ?? pkg.exports);
  const pick = (e) => (typeof e === 'string' ? e : e && (pick(e.import) ?? pick(e.default) ?? pick(e.node)));
  return join(dir, pick(exp) ?? pkg.main ?? 'index.js');
}

async function load(name) {
  for (const base of [projectDir, toolchain]) {
    const dir = join(base, 'node_modules', name);
    if (existsSync(join(dir, 'package.json'))) return import(pathToFileURL(entryOf(dir)).href);
  }
  fail(`cannot find ${name} in ${projectDir}/node_modules or ${toolchain}/node_modules; ${INSTALL}`);
}

const started = Date.now();
const esbuild = await load('esbuild');
const { componentize } = await load('@bytecodealliance/componentize-js');

const work = mkdtempSync(join(tmpdir(), 'weir-js-build-'));
try {
  // weir-stage resolves from the project's node_modules if it has one,
  // else to the SDK this script belongs to.
  const fallback = join(work, 'node_modules');
  mkdirSync(fallback);
  symlinkSync(SDK_DIR, join(fallback, 'weir-stage'));

  let result;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      target: 'es2022',
      mainFields: ['module', 'main'],
      conditions: ['weir-component'],
      external: ['weir:*', 'wasi:*'],
      nodePaths: [fallback],
      sourcemap: 'external',
      sourcesContent: false,
      write: false,
      outfile: join(work, BUNDLE_NAME),
      logLevel: 'silent',
    });
  } catch (error) {
    const messages = (error.errors ?? []).map((e) => {
      const at = e.location ? `${shown(e.location.file)}:${e.location.line}:${e.location.column}: ` : '';
      return `${at}${e.text}`;
    });
    const builtin = messages.find((m) => /Could not resolve "(node:)?(fs|path|http|https|net|os|child_process|crypto|stream|url|util|zlib|buffer|events|worker_threads)(\/[^"]*)?"/.test(m));
    const hint = builtin
      ? '\n(a stage runs in a sandbox without Node.js modules such as fs, http or child_process: do the work in plain JavaScript, or with npm packages written in it)'
      : messages.some((m) => m.includes('Could not resolve'))
        ? `\n(run \`npm install\` in ${shown(projectDir)} for the stage's dependencies)`
        : '';
    fail(`bundling ${shown(entry)} failed:\n  ${messages.join('\n  ') || error.message}${hint}`);
  }
  const code = result.outputFiles.find((f) => f.path.endsWith('.js')).text;
  const map = JSON.parse(result.outputFiles.find((f) => f.path.endsWith('.map')).text);
  const bundle = code + lineTable(map, work) + '\n';
  const bundlePath = join(work, BUNDLE_NAME);
  writeFileSync(bundlePath, bundle);

  let component;
  try {
    ({ component } = await componentize({
      sourcePath: bundlePath,
      witPath: witDir,
      worldName: 'stage',
      disableFeatures: DISABLED_FEATURES,
    }));
  } catch (error) {
    // componentize-js names its own wrapper ("source.js") and suggests a
    // bare `export function init`; the stage's fix is the SDK's export line.
    const unexported = /does not export a "(init|process)" function/.test(error.message);
    const hint = unexported
      ? `\n${shown(entry)} does not export the stage: end it with \`export const { init, process } = exportStage(YourStage);\` (exportStage from 'weir-stage')`
      : '';
    fail(`componentize-js failed on ${shown(entry)}:\n${error.message}${hint}`);
  }
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, component);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const mb = (component.length / 1e6).toFixed(1);
  process.stderr.write(`built ${shown(out)} (${mb} MB) from ${shown(entry)} in ${seconds} s\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

// The bundle's line -> [source, line] table, from esbuild's source map:
// `globalThis.__weirLines`, read by weir-stage when it reports where an
// error came from. Appended after the code, so the code's lines stay put.
function lineTable(map, mapDir) {
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const lines = [];
  let source = 0;
  let origLine = 0;
  for (const group of map.mappings.split(';')) {
    let first = -1;
    let column = 0;
    for (const segment of group.split(',')) {
      if (!segment) continue;
      const values = [];
      let value = 0;
      let shift = 0;
      for (const ch of segment) {
        const digit = B64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
        } else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      column += values[0];
      if (values.length >= 4) {
        source += values[1];
        origLine += values[2];
        if (first < 0) first = (source << 20) | (origLine + 1);
      }
    }
    lines.push(first);
  }
  const sources = map.sources.map((s) => resolve(mapDir, s));
  const sdk = sources.map((s) => (s.startsWith(SDK_DIR + sep) ? 1 : 0));
  const shown = sources.map((s) => relative(projectDir, s));
  const table = { file: BUNDLE_NAME, sources: shown, sdk, lines };
  return `\nglobalThis.__weirLines = ${JSON.stringify(table)};`;
}
