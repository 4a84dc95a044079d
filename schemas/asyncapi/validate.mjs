// Validates schemas/asyncapi.yaml with the AsyncAPI parser (@asyncapi/parser), offline and against
// this working tree: the JSON Schema documents that the AsyncAPI document refers to by their $id
// (schemas.BaseURI + path) are read from schemas/, and each payload is compiled as JSON Schema
// draft 2020-12, the format the document declares for it. Any error or warning fails.
//
//   npm ci --ignore-scripts && node validate.mjs [document]
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const schemasDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const documentPath = resolve(process.argv[2] ?? join(schemasDir, 'asyncapi.yaml'));

// baseURI is schemas.BaseURI (schemas/files.go): where the repository serves schemas/.
const baseURI = 'https://raw.githubusercontent.com/nordpay/frontpay-worker/main/schemas/';

// The documents under baseURI come from this directory. Any other reference, and a document
// missing here, is an error; neither is looked for on the network, so validation never depends
// on it (a resolver that answers stops the parser's own, which would fetch the URL).
const unreadable = [];
const refuse = (uri, why) => {
  unreadable.push(`${uri}: ${why}`);
  return '{}';
};
const local = {
  schema: 'https',
  order: 1,
  canRead: (uri) => uri.toString().startsWith(baseURI),
  read: (uri) =>
    readFile(join(schemasDir, uri.toString().slice(baseURI.length)), 'utf8').catch((err) => refuse(uri, err.message)),
};
const remote = (schema) => ({
  schema,
  order: 2,
  read: (uri) => refuse(uri, `only ${baseURI} is read, from ${schemasDir}`),
});

// jsonSchema2020 is the schema parser of application/schema+json;version=2020-12 payloads. The
// parser hands it each payload with the documents it refers to inlined, each still carrying its
// $id; Ajv, in its draft 2020-12 mode, takes each document once, from this directory, so the
// inlined copies go back to being references to their $id before the payload is compiled. Both
// the documents and the payloads are checked against the meta-schema, and every reference must
// resolve.
const ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }));
for (const dir of [schemasDir, join(schemasDir, 'data')]) {
  for (const name of await readdir(dir)) {
    if (name.endsWith('.schema.json')) {
      try {
        ajv.addSchema(JSON.parse(await readFile(join(dir, name), 'utf8')));
      } catch (err) {
        console.error(`error: ${join(dir, name)}: ${err.message}`);
        process.exit(1);
      }
    }
  }
}
const collapse = (node) => {
  if (Array.isArray(node)) return node.map(collapse);
  if (node === null || typeof node !== 'object') return node;
  if (typeof node.$id === 'string' && node.$id.startsWith(baseURI)) return { $ref: node.$id };
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, collapse(v)]));
};
const invalidSchemas = [];
const compile = (input) => {
  try {
    ajv.compile(collapse(input.data));
    return [];
  } catch (err) {
    const problem = { message: `not valid JSON Schema 2020-12: ${err.message}`, path: input.path };
    invalidSchemas.push(`${problem.message} at ${input.path.join('.')}`);
    return [problem];
  }
};
const jsonSchema2020 = {
  getMimeTypes: () => ['application/schema+json;version=2020-12'],
  validate: async (input) => compile(input),
  // AsyncAPI 3 documents get parse only, not validate.
  parse: async (input) => {
    compile(input);
    return input.data;
  },
};

const parser = new Parser({
  schemaParsers: [jsonSchema2020],
  __unstable: { resolver: { resolvers: [local, remote('https'), remote('http')] } },
});
const { document, diagnostics } = await parser.parse(await readFile(documentPath, 'utf8'), {
  source: documentPath,
});
const problems = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
for (const d of problems) {
  const level = d.severity === DiagnosticSeverity.Error ? 'error' : 'warning';
  console.error(`${level}: ${d.message} at ${d.path.join('.')} [${d.code}]`);
}
for (const p of [...new Set(unreadable), ...new Set(invalidSchemas)]) {
  problems.push(p);
  console.error(`error: ${p}`);
}
if (document === undefined || problems.length > 0) {
  console.error(`${documentPath}: not valid (${problems.length} problems)`);
  process.exit(1);
}
console.log(
  `${documentPath}: valid AsyncAPI ${document.version()}, ` +
    `${document.channels().length} channels, ${document.operations().length} operations, ` +
    `${document.components().messages().length} messages`,
);
