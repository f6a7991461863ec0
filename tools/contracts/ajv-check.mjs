// The strict JSON Schema check of the published contracts (contracts/schemas/*.json), as another
// team's tooling would run it: Ajv2020 (JSON Schema 2020-12) in strict mode, with the standard
// formats (ajv-formats). Used by tests/contracts; prints one JSON document on stdout.
//
//   node ajv-check.mjs compile <schema.json>...
//       compiles each schema; prints [{"schema", "ok", "error"}]; exits 1 if any did not compile
//   node ajv-check.mjs validate <schema.json> < messages.json
//       validates each message of the JSON array on stdin against the schema; prints
//       {"schema", "count", "invalid": [{"index", "errors"}]}; exits 1 if the schema does not
//       compile or any message is invalid
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

function strictAjv() {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  return ajv;
}

function compile(path) {
  return strictAjv().compile(JSON.parse(readFileSync(path, "utf8")));
}

const [command, ...args] = process.argv.slice(2);
if (command === "compile" && args.length > 0) {
  const results = args.map((schema) => {
    try {
      compile(schema);
      return { schema, ok: true, error: null };
    } catch (error) {
      return { schema, ok: false, error: String(error.message ?? error) };
    }
  });
  console.log(JSON.stringify(results));
  process.exit(results.every((r) => r.ok) ? 0 : 1);
} else if (command === "validate" && args.length === 1) {
  const [schema] = args;
  const validate = compile(schema); // throws (exit 1) if the schema does not compile
  const messages = JSON.parse(readFileSync(0, "utf8"));
  const invalid = [];
  messages.forEach((message, index) => {
    if (!validate(message)) invalid.push({ index, errors: validate.errors });
  });
  console.log(JSON.stringify({ schema, count: messages.length, invalid }));
  process.exit(invalid.length === 0 ? 0 : 1);
} else {
  console.error("usage: node ajv-check.mjs compile <schema.json>... | validate <schema.json> < messages.json");
  process.exit(2);
}
