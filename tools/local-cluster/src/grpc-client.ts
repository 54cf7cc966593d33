import {
  credentials,
  InterceptingCall,
  type ChannelCredentials,
  Metadata,
  type Interceptor,
} from '@grpc/grpc-js';
import { cluster, promiseClient } from '@vmm/proto';

/** Metadata carrying `authorization: Bearer <token>`, as docs/api.md's authentication section requires. */
export function bearerMetadata(token: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A client interceptor that adds the bearer token to every call (unary and streaming). */
export function bearerInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (!metadata.get('authorization').length) metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** A ClusterService client for `address`, sending `token` on every call when given. */
export function createClusterClient(address: string, token?: string, channelCredentials: ChannelCredentials = credentials.createInsecure()): cluster.ClusterServiceClient {
  return new cluster.ClusterServiceClient(address, channelCredentials, {
    interceptors: token ? [bearerInterceptor(token)] : [],
  });
}

/** A ClusterService client with promise-returning unary methods; `close()` closes its channel. */
export function clusterApi(address: string, token?: string, channelCredentials?: ChannelCredentials) {
  const client = createClusterClient(address, token, channelCredentials);
  return Object.assign(promiseClient(client, cluster.ClusterServiceService, cluster), {
    client,
    close: () => client.close(),
  });
}
export type ClusterApi = ReturnType<typeof clusterApi>;
