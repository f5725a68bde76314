/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.jest.json' }],
  },
  // Tests run against src/: no build needed.
  moduleNameMapper: {
    '^@turnpike/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
  },
  testTimeout: 20000,
};
