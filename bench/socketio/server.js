// Socket.IO 4 baseline for `chorus bench`: what users who do not pick Chorus pick. Rooms and
// broadcast, the Socket.IO way, doing what the Node `ws` baseline does (bench/node-ws):
// a client connects with `auth: { channel }`, joins that room and receives the event "ok";
// every "m" event it emits goes to every other member of the room, and is acknowledged to
// the sender when it asks for an acknowledgement (as Chorus acknowledges every broadcast).
// Defaults kept: Engine.IO heartbeat (ping every 25 s, 20 s timeout), no compression, the
// in-memory adapter. WebSocket transport only: the load generator never polls.
// Usage: node server.js --port 3004   (binds 127.0.0.1 only)
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 3004;

const http = createServer();
const io = new Server(http, { transports: ['websocket'], serveClient: false });

io.on('connection', (socket) => {
  const channel = String(socket.handshake.auth?.channel ?? '');
  socket.join(channel);
  socket.emit('ok');
  socket.on('m', (data, ack) => {
    socket.to(channel).emit('m', data);
    if (typeof ack === 'function') ack();
  });
});

http.listen(port, '127.0.0.1', () =>
  console.log(`socket.io baseline listening on 127.0.0.1:${port}`),
);
