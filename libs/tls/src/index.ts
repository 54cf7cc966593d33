export { identityOf, identityUri, describeIdentity, NODE_ID_PATTERN, type Identity } from './identity.js';
export { readTlsMaterial, TlsFileError, type TlsFiles, type TlsMaterial } from './tls-files.js';
export { mutualTlsServerCredentials, serverTlsCredentials, mutualTlsChannelCredentials } from './grpc-credentials.js';
export { makeClusterCerts, certFileNames, CertsUsageError, type MakeCertsOptions, type MadeCerts } from './cluster-ca.js';
export { authorizingInterceptor, callerOf, isOpenService, requireRole, peerNodeOf, PEER_NODE_METADATA, type Caller, type CallPolicy, type Refusal } from './peer-authorizer.js';
export { loadAgentPlane, agentPlaneServerCredentials, agentPlaneChannelCredentials, identityOfPem, AGENT_PLANE_ENV, type AgentPlane, type AgentPlaneEnvName } from './agent-plane.js';
export { routeProcessWarnings } from './process-warnings.js';
