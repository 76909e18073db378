// Node.js `ws` fan-out baseline for `chorus bench` (the stack the seed libraries use).
// Minimal dialect: a connection to /ch/<name> joins channel <name> and receives "ok"; every
// text frame a member sends is forwarded verbatim to every other member of the channel.
// Usage: node server.js --port 3003   (binds 127.0.0.1 only)
'use strict';

const { WebSocketServer } = require('ws');

const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 3003;

const channels = new Map();
const wss = new WebSocketServer({ host: '127.0.0.1', port, clientTracking: false });

wss.on('connection', (ws, req) => {
  const name = req.url.startsWith('/ch/') ? req.url.slice(4) : req.url;
  let members = channels.get(name);
  if (!members) {
    members = new Set();
    channels.set(name, members);
  }
  members.add(ws);
  ws.send('ok');
  ws.on('message', (data, isBinary) => {
    for (const peer of members) {
      if (peer !== ws && peer.readyState === 1) peer.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0) channels.delete(name);
  });
  ws.on('error', () => {});
});

wss.on('listening', () => console.log(`node-ws baseline listening on 127.0.0.1:${port}`));
