#!/usr/bin/env node
// Evaluate a FeatureVisor datafile with an OFFICIAL @featurevisor/sdk, for abpilot's Python tests.
//
//   node evaluate.mjs --sdk 1|2 --datafile <path> --feature <key> --users <N>
//                     [--prefix user-] [--attributes '{"country":"de"}'] [--dump]
//
// Users are `${prefix}${i}` for i in 0..N-1, each evaluated with the context
// { userId, ...attributes } through the SDK's own `getVariation(featureKey, context)`.
// Prints one JSON object on stdout:
//   {"sdk": "@featurevisor/sdk@<version>", "counts": {"<variation>": n, ..., "null": n},
//    "variations": [...]}   // "variations" only with --dump; null where no variation
// SDK logging goes to stderr only. Any error exits non-zero with a message on stderr.
//
// Both SDKs swallow problems (a datafile that does not parse, a feature that is missing, an
// exception during evaluation) and just log them and return no variation. Counting those as
// "null" would be a silent lie, so this script checks the datafile's shape and the feature up
// front and fails if the SDK logs anything at level "error".

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const SDK_PACKAGES = { 1: "fv-sdk1", 2: "fv-sdk2" };

function fail(message) {
  process.stderr.write(`evaluate.mjs: ${message}\n`);
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        sdk: { type: "string" },
        datafile: { type: "string" },
        feature: { type: "string" },
        users: { type: "string" },
        prefix: { type: "string", default: "user-" },
        attributes: { type: "string", default: "{}" },
        dump: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail(e.message);
  }
  for (const name of ["sdk", "datafile", "feature", "users"]) {
    if (values[name] === undefined) fail(`--${name} is required`);
  }
  if (!(values.sdk in SDK_PACKAGES)) fail(`--sdk must be 1 or 2, got ${values.sdk}`);
  if (!/^\d+$/.test(values.users)) fail(`--users must be a non-negative integer`);
  let attributes;
  try {
    attributes = JSON.parse(values.attributes);
  } catch (e) {
    fail(`--attributes is not JSON: ${e.message}`);
  }
  if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) {
    fail("--attributes must be a JSON object");
  }
  return { ...values, sdk: Number(values.sdk), users: Number(values.users), attributes };
}

function readDatafile(path, sdkMajor) {
  let datafile;
  try {
    datafile = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    fail(`cannot read datafile ${path}: ${e.message}`);
  }
  if (datafile === null || typeof datafile !== "object" || Array.isArray(datafile)) {
    fail(`datafile ${path} is not a JSON object`);
  }
  // SDK 1 reads schemaVersion "1" (features/segments are arrays); SDK 2 reads schemaVersion "2"
  // (features/segments are objects keyed by key). Neither SDK checks this itself.
  const expected = String(sdkMajor);
  if (datafile.schemaVersion !== expected) {
    fail(
      `datafile ${path} has schemaVersion ${JSON.stringify(datafile.schemaVersion)}; ` +
        `SDK ${sdkMajor} reads schemaVersion "${expected}"`,
    );
  }
  const featuresAreArray = Array.isArray(datafile.features);
  if (sdkMajor === 1 ? !featuresAreArray : featuresAreArray || typeof datafile.features !== "object") {
    fail(`datafile ${path}: "features" has the wrong shape for schemaVersion "${expected}"`);
  }
  return datafile;
}

async function loadSdk(sdkMajor) {
  const specifier = SDK_PACKAGES[sdkMajor];
  const require = createRequire(import.meta.url);
  const manifest = require(`${specifier}/package.json`);
  const sdk = await import(specifier);
  return { sdk, name: `${manifest.name}@${manifest.version}`, version: manifest.version };
}

async function main() {
  const args = parseCli();
  const datafile = readDatafile(args.datafile, args.sdk);
  const { sdk, name, version } = await loadSdk(args.sdk);
  if (Number(version.split(".")[0]) !== args.sdk) {
    fail(`--sdk ${args.sdk} loaded ${name}, a different major`);
  }

  const errors = [];
  const handler = (level, message, details) => {
    if (level === "error" || level === "fatal") errors.push(message);
    process.stderr.write(`[featurevisor ${level}] ${message} ${safeJson(details)}\n`);
  };
  // v1: createLogger({ levels: LogLevel[], handler }); v2: createLogger({ level, handler }).
  const logger =
    args.sdk === 1
      ? sdk.createLogger({ levels: ["error"], handler })
      : sdk.createLogger({ level: "error", handler });
  const instance = sdk.createInstance({ datafile, logger });

  if (errors.length > 0) fail(`the SDK rejected the datafile: ${errors.join("; ")}`);
  if (!instance.getFeature(args.feature)) {
    fail(`feature ${JSON.stringify(args.feature)} is not in datafile ${args.datafile}`);
  }

  const counts = {};
  const variations = args.dump ? [] : undefined;
  let none = 0;
  for (let i = 0; i < args.users; i++) {
    const context = { userId: `${args.prefix}${i}`, ...args.attributes };
    const value = instance.getVariation(args.feature, context);
    // v1 returns undefined for "no variation", v2 returns null.
    if (value === undefined || value === null) {
      none++;
      if (variations) variations.push(null);
    } else {
      const key = String(value);
      counts[key] = (counts[key] || 0) + 1;
      if (variations) variations.push(value);
    }
    if (errors.length > 0) fail(`the SDK logged an error for user ${i}: ${errors.join("; ")}`);
  }
  counts.null = none;

  const result = { sdk: name, counts };
  if (variations) result.variations = variations;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function safeJson(value) {
  try {
    return JSON.stringify(value, (_k, v) => (v instanceof Error ? String(v) : v)) ?? "";
  } catch {
    return String(value);
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
