// Compiles the .sol files beside this script with solcjs (npm package `solc`) into one
// <Contract>.json per contract: {"contractName", "abi", "bytecode", "compiler"}.
// Run through build.sh, which installs the pinned solc version in a temp dir.
const fs = require("fs");
const path = require("path");
const solc = require(process.env.SOLC_MODULE || "solc");

const here = __dirname;
const sources = {};
for (const file of fs.readdirSync(here).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(here, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "shanghai",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
for (const file of Object.keys(output.contracts).sort()) {
  for (const [name, contract] of Object.entries(output.contracts[file])) {
    if (!contract.evm.bytecode.object) continue; // interfaces have no code
    const artifact = {
      contractName: name,
      source: file,
      compiler: "solc " + solc.version(),
      abi: contract.abi,
      bytecode: "0x" + contract.evm.bytecode.object,
    };
    fs.writeFileSync(path.join(here, name + ".json"), JSON.stringify(artifact, null, 1) + "\n");
    console.log("wrote " + name + ".json");
  }
}
