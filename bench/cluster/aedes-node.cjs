// One node of a clustered MQTT 3.1.1 broker: aedes sharing subscriptions, sessions and
// queued messages with the other nodes through Redis (mqemitter-redis carries the
// messages between nodes, aedes-persistence-redis keeps the state).
//
// Usage: node aedes-node.cjs <mqtt port> <redis port> [node id]
// Listens on 127.0.0.1 only and prints "listening <port>" once it accepts connections.
// Kept beside node_modules/ so that Node resolves the packages installed here.
'use strict'

const net = require('net')
const aedes = require('aedes')
const mqemitterRedis = require('mqemitter-redis')
const persistenceRedis = require('aedes-persistence-redis')

const HOST = '127.0.0.1'
const [port, redisPort, nodeId] = process.argv.slice(2)
if (!port || !redisPort) {
  console.error('usage: node aedes-node.cjs <mqtt port> <redis port> [node id]')
  process.exit(2)
}
const redis = { host: HOST, port: Number(redisPort) }
const broker = aedes({
  id: nodeId || `node-${port}`,
  mq: mqemitterRedis(redis),
  persistence: persistenceRedis(redis)
})

broker.on('clientError', (client, err) => {
  console.log(`client ${client.id} error: ${err.message}`)
})
broker.on('client', (client) => console.log(`client ${client.id} connected`))
broker.on('clientDisconnect', (client) => console.log(`client ${client.id} disconnected`))

const server = net.createServer(broker.handle)
server.listen(Number(port), HOST, () => console.log(`listening ${port}`))

function stop () {
  server.close()
  broker.close(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
