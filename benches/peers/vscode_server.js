// The smallest useful vscode-jsonrpc server: `echo` returns its params and
// `initialize` answers at once. LSP (Content-Length) framing on stdin/stdout.
'use strict';
const rpc = require('vscode-jsonrpc/node');

const connection = rpc.createMessageConnection(
  new rpc.StreamMessageReader(process.stdin),
  new rpc.StreamMessageWriter(process.stdout),
);
connection.onRequest('echo', (params) => params);
connection.onRequest('initialize', () => ({ name: 'vscode-jsonrpc' }));
connection.onClose(() => process.exit(0));
connection.listen();
